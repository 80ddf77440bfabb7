"""ret_code bit layout and HTTP status rules of the emulator (reference section 2)."""

from __future__ import annotations

import pytest

from emulator import retcodes as rc
from plugin.linstor.retcodes import MASK_SEVERITY_AND_CODE as MASK


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (rc.success(rc.CREATED, "x", rc.MASK_CRT, rc.MASK_RSC_DFN), 20447233),
        (rc.success(rc.CREATED, "x", rc.MASK_CRT, rc.MASK_RSC), 20185089),
        (rc.success(rc.CREATED, "x", rc.MASK_CRT, rc.MASK_VLM), 19660801),
        (rc.success(rc.MODIFIED, "x", rc.MASK_MOD, rc.MASK_RSC_DFN), 37224451),
        (rc.success(rc.MODIFIED, "x", rc.MASK_MOD, rc.MASK_VLM_DFN), 36700163),
        (rc.success(rc.DELETED, "x", rc.MASK_DEL, rc.MASK_RSC), 53739522),
        (rc.success(rc.DELETED, "x", rc.MASK_DEL, rc.MASK_RSC_DFN), 54001666),
        (rc.error(rc.FAIL_EXISTS_RSC_DFN, "x", rc.MASK_CRT, rc.MASK_RSC_DFN), -4611686018406940171),
        (rc.error(rc.FAIL_EXISTS_RSC_GRP, "x", rc.MASK_CRT, rc.MASK_RSC_GRP), -4611686018406153718),
        (rc.error(rc.FAIL_NOT_FOUND_RSC_DFN, "x"), -4611686018427387603),
        (rc.error(rc.FAIL_NOT_ENOUGH_NODES, "x", rc.MASK_CRT, rc.MASK_RSC), -4611686018407201820),
        (rc.error(rc.FAIL_IN_USE, "x", rc.MASK_DEL, rc.MASK_RSC), -4611686018373647387),
        (rc.error(rc.FAIL_EXISTS_SNAPSHOT_DFN, "x", rc.MASK_DEL, rc.MASK_RSC_DFN), -4611686018373385726),
        (rc.warn(rc.WARN_NOT_FOUND, "x", rc.MASK_DEL, rc.MASK_RSC_DFN), -9223372036800771144),
        (rc.warn(rc.WARN_NOT_CONNECTED, "x"), -9223372036854774806),
        (rc.info(rc.INFO_RSC_ALREADY_EXISTS, "x", rc.MASK_CRT, rc.MASK_RSC), 4611686018447583000),
    ],
)
def test_ret_codes_match_the_controller(entry: rc.Entry, expected: int) -> None:
    assert entry.ret_code == expected


def test_context_bits_fill_only_when_missing() -> None:
    bare = rc.error(rc.FAIL_NOT_FOUND_RSC_DFN, "missing")
    assert bare.with_context(rc.MASK_CRT, rc.MASK_RSC).ret_code == rc.to_signed(
        rc.MASK_ERROR | rc.MASK_CRT | rc.MASK_RSC | 301
    )
    own = rc.error(rc.FAIL_IN_USE, "busy", rc.MASK_DEL, rc.MASK_RSC)
    assert own.with_context(rc.MASK_CRT, rc.MASK_SNAPSHOT).ret_code == -4611686018373647387


def test_masked_compare_ignores_context() -> None:
    for op, obj in ((0, 0), (rc.MASK_CRT, rc.MASK_RSC), (rc.MASK_DEL, rc.MASK_SNAPSHOT)):
        assert rc.error(rc.FAIL_IN_USE, "x", op, obj).ret_code & MASK == 0xC0000000000003E5


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ([], 201),
        ([rc.warn(rc.WARN_NOT_FOUND, "w")], 200),
        ([rc.info(rc.INFO_RSC_ALREADY_EXISTS, "i")], 201),
        ([rc.error(rc.FAIL_NOT_FOUND_NODE, "e")], 404),
        ([rc.error(rc.FAIL_NOT_FOUND_DFLT_STOR_POOL, "e")], 404),
        ([rc.error(rc.FAIL_ACC_DENIED_COMMAND, "e")], 403),
        ([rc.error(rc.FAIL_EXISTS_RSC_DFN, "e")], 500),
        ([rc.error(rc.FAIL_IN_USE, "e")], 500),
        ([rc.success(rc.CREATED, "ok"), rc.error(rc.FAIL_NOT_FOUND_RSC, "e"), rc.error(997, "x")], 404),
        ([rc.error(rc.FAIL_NOT_ENOUGH_NODES, "e"), rc.error(rc.FAIL_NOT_FOUND_RSC, "e")], 500),
    ],
)
def test_http_status_comes_from_the_first_error(codes: list[rc.Entry], status: int) -> None:
    success = 200 if codes and codes[0].severity == rc.MASK_WARN else 201
    assert rc.http_status(codes, success) == status


def test_entry_json_omits_empty_fields() -> None:
    data = rc.error(rc.FAIL_IN_USE, "busy").to_json()
    assert set(data) == {"ret_code", "message", "created_at"}
    full = rc.error(
        rc.FAIL_IN_USE, "busy", cause="c", details="d", correction="f", obj_refs={"RscDfn": "r"}
    ).to_json()
    assert full["cause"] == "c" and full["details"] == "d" and full["correction"] == "f"
    assert full["obj_refs"] == {"RscDfn": "r"}


def test_parse_error_has_the_literal_code() -> None:
    from emulator.body import parse_error_entry

    entry = parse_error_entry("bad")
    assert entry.ret_code == -3458764513820540931
    assert entry.with_context(rc.MASK_CRT, rc.MASK_RSC).ret_code == -3458764513820540931
    assert rc.is_error(entry.ret_code)
