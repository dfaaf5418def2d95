"""`falconet provision` and `falconet export`: put the Elasticsearch and Kibana assets in place.

bundle.py reads the asset trees (elasticsearch/, kibana/) and fills in the namespace and retention;
plan.py runs the fixed, ordered steps against one of the back ends: the cluster (es.py, kibana.py;
connection.py holds the endpoints and the wait for readiness), or files.py (files for `export`, a
printout of every call for --dry-run). pipeline.py generates the ingest pipeline that maps raw Falco
alerts from sensor/ecs.py's table.
"""
