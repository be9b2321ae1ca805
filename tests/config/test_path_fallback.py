"""A field's ``path`` as a list of JSONPaths tried in order: how ``check`` compiles it, where
it reports a bad item, and ``leadhub try`` on a real configuration directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.config import ConfigError, load
from tests.support.server import leadhub_run

ENDPOINT = "kind: endpoint\nname: site\nsource: none\n---\n"
MAPPING = "kind: mapping\nname: m\nendpoint: site\nfields:\n"  # lines 5-8 after ENDPOINT


def _write(tmp_path: Path, fields: str) -> Path:
    (tmp_path / "site.yaml").write_text(ENDPOINT + MAPPING + fields, encoding="utf-8")
    return tmp_path / "site.yaml"


def _issues(tmp_path: Path, fields: str) -> list[str]:
    _write(tmp_path, fields)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    return caught.value.issues


def test_a_list_of_paths_compiles_in_its_order(tmp_path: Path) -> None:
    """``path: [$.lead.email, $.email]`` compiles to the first path and the rest as its
    fallbacks, in the order written; a list of one is that one path."""
    _write(
        tmp_path,
        "  EmailAddress: { path: [$.lead.email, $.email, \"$['e-mail']\"], required: true }\n"
        "  Phone: { path: [$.phone] }\n",
    )
    config = load(tmp_path, {})
    email, phone = config.mappings["m"].fields
    assert [p.text for p in email.paths] == ["$.lead.email", "$.email", "$['e-mail']"]
    assert email.path is not None and email.path.text == "$.lead.email"
    assert [p.text for p in email.fallbacks] == ["$.email", "$['e-mail']"]
    assert email.required is True
    assert phone.path is not None and phone.path.text == "$.phone" and phone.fallbacks == ()
    assert [w for w in config.warnings if "field" in w] == []


def test_each_bad_item_is_an_error_at_its_own_line(tmp_path: Path) -> None:
    """Each item is checked as one path is (the ``|`` refusal, a path that does not compile,
    an item that is no text), each error at that item's own line, not the field's; and the
    field is not used with fewer paths than written."""
    fields = (
        "  EmailAddress:\n"  # line 9
        "    path:\n"
        "      - $.lead.email\n"
        "      - $.lead.work | $.email\n"  # line 12
        "      - $lead.email\n"  # line 13
        "      - {a: 1}\n"  # line 14
        "    required: true\n"
    )
    issues = _issues(tmp_path, fields)
    shown = str(tmp_path / "site.yaml")
    where = "field 'EmailAddress' of mapping 'm'"
    assert len(issues) == 3, issues
    assert issues[0].startswith(f"{shown}:12: path 2 of {where}: JSONPath '$.lead.work | $.email'")
    assert "holds '|', which does not join two paths" in issues[0]
    assert issues[1].startswith(f"{shown}:13: path 3 of {where}: JSONPath '$lead.email' needs")
    assert issues[2] == (
        f"{shown}:14: path 4 of {where} is a mapping; each item of the list is a JSONPath in "
        "text, like [$.lead.email, $.email]"
    )


def test_an_empty_list_of_paths_is_an_error_with_the_fix(tmp_path: Path) -> None:
    """``path: []`` names no path: an error at its line saying the two ways to write one."""
    issues = _issues(tmp_path, "  EmailAddress: { path: [], required: true }\n")
    assert issues == [
        f"{tmp_path / 'site.yaml'}:9: 'path' of field 'EmailAddress' of mapping 'm' is an empty "
        "list, which names no path; write one JSONPath, like $.email, or the paths to try in "
        "order, like [$.lead.email, $.email]"
    ]


def test_a_union_in_a_field_path_points_at_the_list(tmp_path: Path) -> None:
    """``$.lead.email | $.email`` meant as "else" is still refused, and in a field the error
    now also says how to write that: the list of paths."""
    issues = _issues(tmp_path, "  EmailAddress: { path: $.lead.email | $.email }\n")
    assert len(issues) == 1
    assert issues[0].startswith(f"{tmp_path / 'site.yaml'}:9: field 'EmailAddress' of mapping")
    assert issues[0].endswith(
        "; to read the first of several paths that gives a value, list them: "
        "{path: [$.lead.email, $.email]}"
    )


def test_a_path_listed_twice_is_a_warning(tmp_path: Path) -> None:
    """A path listed again can never give a value the first did not: a warning at its line."""
    _write(
        tmp_path,
        "  EmailAddress:\n    path:\n      - $.email\n      - $.lead.email\n      - $.email\n",
    )
    assert [w for w in load(tmp_path, {}).warnings if "field" in w] == [
        f"{tmp_path / 'site.yaml'}:13: path 3 of field 'EmailAddress' of mapping 'm' is path 1 "
        "again, '$.email': it never gives a value the first did not; remove it"
    ]


def test_a_bare_list_names_the_long_form_with_its_own_paths(tmp_path: Path) -> None:
    """The short form ``EmailAddress: [a, b]`` stays refused (first value, or all of them?),
    and the error writes the long form with the user's own paths, quoted where YAML needs."""
    issues = _issues(tmp_path, '  EmailAddress: [$.lead.email, "$.answers[0].email"]\n')
    assert len(issues) == 1
    assert (
        "for the first of these paths that gives a value write "
        '{path: [$.lead.email, "$.answers[0].email"]}'
    ) in issues[0]


#: A website backend that sent ``lead.email`` and now sends ``email``.
TRY_CONFIG = (
    "kind: endpoint\nname: site\nsource: none\n---\n"
    "name: site-lead\nendpoint: site\nfields:\n"
    "  EmailAddress: { path: [$.lead.email, $.email], transform: [trim, lower], required: true }\n"
    "  Company: { path: [$.lead.company, $.company], default: Unknown }\n"
)


def test_leadhub_try_reads_the_first_path_that_gives_a_value(tmp_path: Path) -> None:
    """``leadhub try`` on a real directory: the old payload's ``lead.email`` and the new one's
    ``email`` both give EmailAddress; with neither, the error names both paths and what each
    found, in the human form and ``--json``."""
    (tmp_path / "site.yaml").write_text(TRY_CONFIG)
    payload = tmp_path / "doc.json"
    argv = ["try", "site", str(payload), "--config-dir", str(tmp_path), "--json"]

    payload.write_text('{"lead": {"email": " Old@Example.com ", "company": "Acme"}}')
    old = leadhub_run(argv)
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["body"] == [
        {"Attribute": "EmailAddress", "Value": "old@example.com"},
        {"Attribute": "Company", "Value": "Acme"},
    ]

    payload.write_text('{"lead": {"email": null, "company": " "}, "email": "New@Example.com"}')
    new = leadhub_run(argv)
    assert new.returncode == 0, new.stderr
    result = json.loads(new.stdout)
    assert result["body"] == [
        {"Attribute": "EmailAddress", "Value": "new@example.com"},
        {"Attribute": "Company", "Value": "Unknown"},
    ]
    assert result["warnings"] == []

    payload.write_text('{"lead": {"email": ""}}')
    human = leadhub_run(argv[:-1])
    as_json = leadhub_run(argv)
    assert human.returncode == as_json.returncode == 1, human.stderr + as_json.stderr
    reason = (
        "required value missing in mapping 'site-lead': EmailAddress ($.lead.email found only "
        "null, blank or empty values; $.email found nothing)"
    )
    assert human.stdout == f"error (mapping site-lead): {reason}\n"
    assert json.loads(as_json.stdout)["reason"] == reason
