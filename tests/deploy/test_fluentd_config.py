"""The Fluentd configuration reader (tests/deploy/fluentd_config.py) reads what Fluentd reads and
refuses what Fluentd refuses, so the checks of fluent/fluent.conf built on it mean something."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fluentd_config import USE_DEFAULT, FluentConfigError, configure, parse, parse_text, route, tag_matches


def test_values_quotes_comments_and_json() -> None:
    root = parse_text(
        "<source>\n"
        "  @type forward   # a comment after a value\n"
        "  port 24224\n"
        "  path /var/log/a#b\n"
        '  quoted "a \\"b\\" #{\'c\'}"\n'
        "  single 'it\\'s'\n"
        "  flag\n"
        '  list ["a", "b",\n'
        '         "c"]\n'
        "</source>\n")
    src = root.section("source")
    assert src is not None
    assert src.get("@type") == "forward"
    assert src.get("port") == "24224"
    assert src.get("path") == "/var/log/a#b"          # '#' inside a word is not a comment
    assert src.get("quoted") == 'a "b" c'
    assert src.get("single") == "it's"
    assert src.get("flag") == ""                       # a key alone on its line
    assert src.get("list") == '["a", "b", "c"]'


def test_directive_arguments_with_spaces_and_nesting() -> None:
    root = parse_text("<label @X>\n  <match a.b  c.*>\n    @type null\n  </match>\n</label>\n")
    match = root.section("label").section("match")  # type: ignore[union-attr]
    assert root.section("label").arg == "@X"  # type: ignore[union-attr]
    assert match.arg == "a.b  c.*"  # type: ignore[union-attr]
    assert match.where.endswith(":2")  # type: ignore[union-attr]


def test_embedded_ruby_reads_the_given_environment() -> None:
    text = ('<system>\n'
            '  a "#{ENV[\'X\'] || \'dflt\'}"\n'
            '  b "#{ENV[\'Y\'] || use_nil}"\n'
            '  c "#{ENV[\'Z\'].to_s.empty? ? \'off\' : \'on\'}"\n'
            '  d "#{ENV[\'X\'] || use_default}"\n'
            '  e "prefix-#{ENV[\'X\'] == \'1\' ? \'one\' : \'other\'}-suffix"\n'
            '</system>\n')
    unset = parse_text(text, {}).section("system")
    assert unset is not None
    assert unset.get("a") == "dflt"
    assert unset.params["b"].value is None
    assert unset.get("c") == "off"
    assert unset.params["d"].value is USE_DEFAULT
    assert unset.get("e") == "prefix-other-suffix"
    sets = parse_text(text, {"X": "1", "Y": "y", "Z": "z"}).section("system")
    assert sets is not None
    assert (sets.get("a"), sets.get("b"), sets.get("c"), sets.get("d"), sets.get("e")) == \
        ("1", "y", "on", "1", "prefix-one-suffix")
    # Ruby: "" is true, so an empty variable does not fall back to the default.
    assert parse_text(text, {"X": ""}).section("system").get("a") == ""  # type: ignore[union-attr]


def test_embedded_ruby_outside_the_subset_is_an_error_with_its_line() -> None:
    with pytest.raises(FluentConfigError, match=r"<text>:3: embedded Ruby .*Socket"):
        parse_text('<system>\n  a 1\n  b "#{Socket.gethostname}"\n</system>\n')


@pytest.mark.parametrize(("text", "message"), [
    ("<source>\n  @type forward\n", r"expected end tag '</source>' \(opened at line 1\)"),
    ("<source>\n  @type forward\n</match>\n", r":3: unmatched end tag </match>"),
    ("<match a>\n  @foo bar\n</match>\n", r":2: '@' is the system reserved prefix"),
    ('<match a>\n  x "unterminated\n</match>\n', r"unexpected end of file in a double quoted"),
    ("<match a>\n  x 1\n  x 2\n</match>\n", r":3: parameter 'x' is set twice"),
    ("<match a>\n  list [1, 2\n</match>\n", r"incomplete JSON"),
])
def test_malformed_configuration_is_refused(text: str, message: str) -> None:
    with pytest.raises(FluentConfigError, match=message):
        parse_text(text)


def test_include_is_relative_to_the_including_file_and_works_inside_directives(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.conf").write_text("port 1\n@include two-*.conf\n")
    (tmp_path / "d" / "two-a.conf").write_text("<security>\n  shared_key k\n</security>\n")
    main = tmp_path / "main.conf"
    main.write_text('<source>\n  @type forward\n  @include "d/#{ENV[\'F\'] || \'one\'}.conf"\n</source>\n')
    src = parse(main, {}).section("source")
    assert src is not None
    assert src.get("port") == "1"
    assert src.section("security").get("shared_key") == "k"  # type: ignore[union-attr]
    assert src.params["port"].file.endswith("one.conf")
    with pytest.raises(FluentConfigError, match=r"main.conf:3: @include 'd/nope.conf' matches no file"):
        parse(main, {"F": "nope"})


@pytest.mark.parametrize(("pattern", "tag", "expected"), [
    ("falconet.alerts", "falconet.alerts", True),
    ("falconet.alerts", "falconet.alerts.x", False),
    ("falconet.*", "falconet.log", True),
    ("falconet.*", "falconet.log.x", False),
    ("falconet.**", "falconet", True),
    ("falconet.**", "falconet.a.b", True),
    ("**", "anything.at.all", True),
    ("{a,b}.c", "b.c", True),
    ("{a,b}.c", "d.c", False),
    ("x y.z", "y.z", True),
])
def test_match_patterns(pattern: str, tag: str, expected: bool) -> None:
    assert tag_matches(pattern, tag) is expected


def test_route_follows_filters_relabels_and_first_match() -> None:
    root = parse_text(
        "<source>\n  @type forward\n  @label @IN\n</source>\n"
        "<label @IN>\n"
        "  <filter a.**>\n    @type record_transformer\n  </filter>\n"
        "  <match a.b>\n    @type relabel\n    @label @OUT\n  </match>\n"
        "  <match **>\n    @type null\n  </match>\n"
        "</label>\n"
        "<label @OUT>\n  <match a.b>\n    @type stdout\n  </match>\n"
        "  <match a.b>\n    @type file\n  </match>\n"
        "</label>\n")
    r = route(root, "a.b", "@IN")
    assert r.output is not None and r.output.type == "stdout"
    assert [f.type for f in r.filters] == ["record_transformer"]
    assert r.labels == ["@IN", "@OUT"]
    assert route(root, "c", "@IN").output.type == "null"  # type: ignore[union-attr]


def _labels_config(inner_target: str, error_target: str = "@OUT") -> str:
    return ("<source>\n  @type forward\n  @label @IN\n</source>\n"
            "<label @IN>\n"
            f"  <match **>\n    @type relabel\n    @label {inner_target}\n  </match>\n"
            "</label>\n"
            f"<label @ERROR>\n  <match **>\n    @type relabel\n    @label {error_target}\n  </match>\n</label>\n"
            "<label @OUT>\n  <match **>\n    @type null\n  </match>\n</label>\n")


def test_a_relabel_to_error_from_inside_a_label_stops_fluentd_at_start() -> None:
    # root_agent.rb: every <label> but @ERROR is added and configured first; @ERROR comes last, so
    # out_relabel inside @IN cannot find it ("@ERROR label not found (ArgumentError)").
    with pytest.raises(FluentConfigError, match=r"<text>:8: <match \*\*> @label @ERROR: ArgumentError: "
                                                r"@ERROR label not found"):
        configure(parse_text(_labels_config("@ERROR")))


def test_labels_defined_later_in_the_file_and_error_routing_out_are_fine() -> None:
    # A label defined below the relabel is found (labels are registered before any is configured),
    # and @ERROR may hand records on to any other label.
    assert configure(parse_text(_labels_config("@OUT", "@OUT"))) == ["@IN", "@OUT", "@ERROR"]
    root_level = parse_text("<match **>\n  @type relabel\n  @label @ERROR\n</match>\n"
                            "<label @ERROR>\n  <match **>\n    @type null\n  </match>\n</label>\n")
    assert configure(root_level) == ["@ERROR"]      # root plugins are configured after @ERROR


@pytest.mark.parametrize(("text", "message"), [
    ("<label @A>\n</label>\n<label @A>\n</label>\n", r":3: ConfigError: Section <label @A> appears twice"),
    ("<label @ROOT>\n</label>\n", r"@ROOT for <label> is not permitted"),
    ("<source>\n  @type forward\n  @label @NOPE\n</source>\n", r":3: <source > @label @NOPE: .*not found"),
])
def test_labels_fluentd_refuses(text: str, message: str) -> None:
    with pytest.raises(FluentConfigError, match=message):
        configure(parse_text(text))
