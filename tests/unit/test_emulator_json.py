"""JSON omission (Jackson NON_EMPTY), body parsing, pagination and the props helpers."""

from __future__ import annotations

import json

import pytest

from emulator import body, props
from emulator import retcodes as rc
from emulator.routing import Pojo, Request, omit_empty, paginate


def test_omit_empty_drops_empties_but_keeps_zero_and_false() -> None:
    data = {
        "a": "",
        "b": [],
        "c": {},
        "d": None,
        "zero": 0,
        "no": False,
        "nested": {"x": "", "y": 1, "z": [{"k": None, "v": 0}]},
        "empty_nested": {"x": ""},
        "resource_name_suffix": "",
        "state": Pojo(),
    }
    assert omit_empty(data) == {
        "zero": 0,
        "no": False,
        "nested": {"y": 1, "z": [{"v": 0}]},
        "resource_name_suffix": "",
        "state": {},
    }


def test_body_check_accepts_valid_and_rejects_wrong_types_and_unknown_fields() -> None:
    ok = body.check({"resource_definition": {"name": "r1", "props": {"Aux/a": "b"}}}, body.RD_CREATE)
    assert ok["resource_definition"]["name"] == "r1"
    assert body.check({"resource_definition": None}, body.RD_CREATE) == {"resource_definition": None}
    for bad in (
        {"resource_definition": {"name": [1]}},
        {"resource_definition": {"props": {"a": {}}}},
        {"resource_definition": []},
        {"other": 1},
        [],
    ):
        with pytest.raises(body.ParseError):
            body.check(bad, body.RD_CREATE)
    with pytest.raises(body.ParseError):
        body.check({"volume_definition": {"size_kib": True}}, body.VD_CREATE)
    with pytest.raises(body.ParseError):
        body.check({"volume_definition": {"size_kib": "1.5"}}, body.VD_CREATE)


def test_body_check_coerces_scalars_like_jackson() -> None:
    """The linstor client sends numbers as strings; Jackson's default mapper accepts them."""
    flt = body.check({"place_count": "2", "diskless_on_remaining": "true"}, body.SELECT_FILTER)
    assert flt == {"place_count": 2, "diskless_on_remaining": True}
    assert body.check({"place_count": " 3 ", "diskless_on_remaining": "FALSE"}, body.SELECT_FILTER) == {
        "place_count": 3,
        "diskless_on_remaining": False,
    }
    assert body.check({"diskless_on_remaining": 0}, body.SELECT_FILTER) == {"diskless_on_remaining": False}
    assert body.check({"place_count": ""}, body.SELECT_FILTER) == {"place_count": None}
    # ACCEPT_FLOAT_AS_INT truncates; numbers and booleans become their text in String fields.
    assert body.check({"volume_definition": {"size_kib": 1.5}}, body.VD_CREATE)["volume_definition"] == {
        "size_kib": 1
    }
    named = body.check({"resource_definition": {"name": 1, "props": {"a": True}}}, body.RD_CREATE)
    assert named["resource_definition"] == {"name": "1", "props": {"a": "true"}}
    # Sizes are Java longs; place counts are ints.
    big = body.check({"volume_sizes": [str(1 << 40)]}, body.RG_SPAWN)
    assert big == {"volume_sizes": [1 << 40]}
    for bad in ({"place_count": "two"}, {"place_count": str(1 << 31)}, {"diskless_on_remaining": "yes"}):
        with pytest.raises(body.ParseError):
            body.check(bad, body.SELECT_FILTER)


def test_request_json_and_query_helpers() -> None:
    req = Request("GET", "/v1/x", query={"limit": ["2"], "offset": ["1"], "flag": ["true"]}, raw_body=b"  ")
    assert req.json() is None and req.q_int("limit") == 2 and req.q_bool("flag") and not req.q_bool("none")
    assert paginate([1, 2, 3, 4], req) == [2, 3]
    assert paginate([1, 2, 3], Request("GET", "/", query={"offset": ["2"]})) == [1, 2, 3]
    with pytest.raises(body.ParseError):
        Request("POST", "/", raw_body=b"{nope").json()
    with pytest.raises(body.ParseError):
        Request("GET", "/", query={"limit": ["many"]}).q_int("limit")


def test_props_whitelist_and_modify() -> None:
    assert props.key_problem("Aux/anything/deep", "x") is None
    assert props.key_problem("FileSystem/Type", "xfs") is None
    assert props.key_problem("FileSystem/Type", "vfat") is not None
    assert props.key_problem("DrbdOptions/Net/allow-two-primaries", "maybe") is not None
    assert props.key_problem("Nope", "x") is not None
    assert props.key_problem("Aux/", "x") is not None
    with pytest.raises(rc.ApiFailure) as exc:
        props.validate_props({"Bad": "1"}, rc.MASK_MOD, rc.MASK_RSC_DFN)
    assert exc.value.entries[0].code == rc.FAIL_INVLD_PROP
    before = {"Aux/a": "1", "Aux/ns/b": "2", "Aux/ns/c": "3", "Keep": "k"}
    after = props.apply_modify(before, {"Aux/new": "n"}, ["Aux/a"], ["Aux/ns"])
    assert after == {"Keep": "k", "Aux/new": "n"} and before["Aux/a"] == "1"


def test_drbd_options_are_whitelisted_with_drbd_ranges() -> None:
    ok = {
        "DrbdOptions/Net/allow-two-primaries": "yes",
        "DrbdOptions/Net/protocol": "C",
        "DrbdOptions/Resource/quorum": "majority",
        "DrbdOptions/Resource/on-no-quorum": "suspend-io",
        "DrbdOptions/PeerDevice/c-max-rate": "102400",
        "DrbdOptions/Net/max-buffers": "131072",
        "DrbdOptions/auto-add-quorum-tiebreaker": "True",
        "DrbdOptions/Handlers/split-brain": "/usr/lib/drbd/notify-split-brain.sh root",
    }
    for key, value in ok.items():
        assert props.key_problem(key, value) is None, key
    assert props.key_problem("DrbdOptions/Resource/quorum", "3") is None
    refused = {
        ("DrbdOptions/Resource/quorum", "33"): "between 1 and 32",
        ("DrbdOptions/Resource/quorum", "most"): "majority",
        ("DrbdOptions/Net/max-buffers", "31"): "between 32 and 131072",
        ("DrbdOptions/PeerDevice/c-max-rate", "100M"): "an integer 250-4194304",
        ("DrbdOptions/Net/protocol", "D"): "one of A, B, C",
        ("DrbdOptions/Net/no-such-option", "1"): "not whitelisted",
        ("DrbdOptions/x", "y"): "not whitelisted",
        ("FileSystem/Colour", "blue"): "not whitelisted",
    }
    for (key, value), why in refused.items():
        problem = props.key_problem(key, value)
        assert problem is not None and why in problem, (key, value, problem)


def test_property_keys_have_at_most_256_characters() -> None:
    assert props.key_problem("Aux/" + "k" * 252, "v") is None
    problem = props.key_problem("Aux/" + "k" * 253, "v")
    assert problem is not None and "at most 256" in problem
    with pytest.raises(rc.ApiFailure) as exc:
        props.validate_props({"Aux/" + "k" * 300: "v"}, rc.MASK_CRT, rc.MASK_RSC_DFN)
    assert exc.value.entries[0].code == rc.FAIL_INVLD_PROP


def test_props_filters_are_and_ed() -> None:
    p = {"Aux/zone": "a", "Aux/rack": "1"}
    assert props.matches_filters(p, [])
    assert props.matches_filters(p, ["Aux/zone=a", "Aux/rack"])
    assert not props.matches_filters(p, ["Aux/zone=a", "Aux/rack=2"])
    assert not props.matches_filters(p, ["Aux/missing"])


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_json_is_a_parse_error(text: str) -> None:
    with pytest.raises(body.ParseError, match="nested too deeply"):
        body.loads(text.encode())


def test_body_loads_keeps_ordinary_json() -> None:
    assert body.loads(b"  ") is None
    assert body.loads(json.dumps({"a": [1, 2]}).encode()) == {"a": [1, 2]}
    with pytest.raises(body.ParseError, match="malformed JSON"):
        body.loads(b"{")
    with pytest.raises(body.ParseError):
        body.loads(b"\xff\xfe")
