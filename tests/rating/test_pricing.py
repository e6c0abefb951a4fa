"""Exact decimal cases for metering.pricing (no database)."""

from decimal import Decimal as D

import pytest

from metering.pricing import (
    ChargePropertiesInvalid,
    ChargeTerms,
    parse_charge_properties,
    price_units,
    terms_to_properties,
)


def terms(model, **props):
    return parse_charge_properties(charge_model=model, properties=props)


def amount(t, units):
    return price_units(terms=t, units=D(units)).amount


def errors_of(model, props):
    with pytest.raises(ChargePropertiesInvalid) as excinfo:
        parse_charge_properties(charge_model=model, properties=props)
    return excinfo.value.error_details


# ----------------------------------------------------------------- standard


class TestStandard:
    def test_units_times_amount(self):
        t = terms("standard", amount="0.05")
        assert amount(t, "12") == D("0.600000")
        assert str(amount(t, "12")) == "0.600000"

    def test_cad_0_0075_per_core_hour_in_cpu_seconds_is_exact(self):
        t = terms("standard", amount="0.0075", unit_batch=3600)
        # one core-hour
        assert amount(t, "3600") == D("0.0075")
        # half a core-hour: the half-cent the predecessor lost to 2-dp rounding
        assert amount(t, "1800") == D("0.00375")
        # 1,000 core-hours = 7.50 exactly
        assert amount(t, "3600000") == D("7.500000")
        # one CPU-second = 0.0075/3600 = 0.0000020833..., 6 dp half-up
        assert amount(t, "1") == D("0.000002")
        # 7 CPU-seconds = 0.0000145833... -> 0.000015
        assert amount(t, "7") == D("0.000015")
        # 3,601 seconds: 0.0075 + 0.0000020833 = 0.0075020833 -> 0.007502
        assert amount(t, "3601") == D("0.007502")

    def test_rounds_once_at_the_end_not_per_step(self):
        # 1,799 seconds at 0.0075/3600 = 0.00374791666...: a 2-dp rounding
        # mid-calculation gives 0.00; we keep it to 6 dp.
        t = terms("standard", amount="0.0075", unit_batch=3600)
        assert amount(t, "1799") == D("0.003748")
        # summing 480 such windows stays exact to the micro-unit
        assert amount(t, str(1799 * 480)) == D("1.799000")

    def test_half_micro_rounds_half_up(self):
        t = terms("standard", amount="0.000001", unit_batch=2)
        assert amount(t, "1") == D("0.000001")  # 0.0000005 -> half-up
        assert amount(t, "3") == D("0.000002")  # 0.0000015 -> 0.000002
        t = terms("standard", amount="0.0000005")
        assert amount(t, "1") == D("0.000001")

    def test_free_units_then_batches(self):
        t = terms("standard", amount="0.0075", unit_batch=3600, free_units=360000)
        assert price_units(terms=t, units=D("360000")).amount == D("0")
        priced = price_units(terms=t, units=D("363600"))
        assert priced.billable_units == D("3600")
        assert priced.amount == D("0.0075")
        assert amount(t, "100") == D("0")

    def test_fractional_units_and_free_units(self):
        t = terms("standard", amount="2", free_units="0.5")
        assert amount(t, "1.25") == D("1.500000")

    def test_unit_batch_decimal_string(self):
        t = terms("standard", amount="1", unit_batch="0.5")
        assert amount(t, "3") == D("6")

    def test_zero_units(self):
        p = price_units(terms=terms("standard", amount="9"), units=D("0"))
        assert p.amount == D("0") and p.billable_units == D("0")

    def test_large_values_stay_exact(self):
        t = terms("standard", amount="123456789.123456")
        assert amount(t, "98765432109876.54321") == D("12193263124676038397683.271209")  # exact 12193263124676038397683.27120853376


# ----------------------------------------------------------------- package


class TestPackage:
    def test_lago_example(self):
        t = terms("package", amount="5.00", free_units=100, package_size=1000)
        assert amount(t, "0") == 0
        assert amount(t, "100") == 0  # units <= free units
        assert amount(t, "101") == D("5")
        assert amount(t, "1100") == D("5")  # exactly one package after the free units
        assert amount(t, "1100.000001") == D("10")
        assert amount(t, "1101") == D("10")
        assert amount(t, "2100") == D("10")
        assert amount(t, "2101") == D("15")

    def test_defaults_free_units_to_zero(self):
        t = terms("package", amount="0.3", package_size=3)
        assert amount(t, "1") == D("0.3")
        assert amount(t, "3") == D("0.3")
        assert amount(t, "4") == D("0.6")

    def test_billable_units(self):
        t = terms("package", amount="1", free_units=10, package_size=5)
        assert price_units(terms=t, units=D("17")).billable_units == D("7")


# ----------------------------------------------------------------- graduated

CLASSIC_GRADUATED = {
    "graduated_ranges": [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
        {"from_value": 11, "to_value": 20, "per_unit_amount": "0.5", "flat_amount": "2"},
        {"from_value": 21, "to_value": None, "per_unit_amount": "0.25", "flat_amount": "3"},
    ]
}
ADJACENT_GRADUATED = {
    "graduated_ranges": [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
        {"from_value": 10, "to_value": 20, "per_unit_amount": "0.5", "flat_amount": "2"},
        {"from_value": 20, "to_value": None, "per_unit_amount": "0.25", "flat_amount": "3"},
    ]
}


class TestGraduated:
    @pytest.mark.parametrize("props", [CLASSIC_GRADUATED, ADJACENT_GRADUATED], ids=["classic", "adjacent"])
    @pytest.mark.parametrize(
        "units,expected",
        [
            ("0", "0"),
            ("1", "1"),
            ("9.5", "9.5"),
            ("10", "10"),  # last unit of tier 1; tier 2 not reached
            ("10.5", "12.25"),  # 10 + 0.5*0.5 + flat 2
            ("11", "12.5"),  # first full unit of tier 2
            ("20", "17"),  # 10 + 10*0.5 + 2: end of tier 2
            ("20.000001", "20.00000025"),  # tier 3 reached: + flat 3
            ("21", "20.25"),
            ("100", "40"),  # 10 + 7 + 80*0.25 + 3
        ],
    )
    def test_every_tier_boundary(self, props, units, expected):
        t = parse_charge_properties(charge_model="graduated", properties=props)
        assert amount(t, units) == D(expected).quantize(D("0.000001"), rounding="ROUND_HALF_UP")

    def test_lago_reference_example(self):
        t = terms(
            "graduated",
            graduated_ranges=[
                {"from_value": 0, "to_value": 100, "per_unit_amount": "0", "flat_amount": "0"},
                {"from_value": 101, "to_value": None, "per_unit_amount": "0.01", "flat_amount": "5"},
            ],
        )
        assert amount(t, "100") == 0
        assert amount(t, "101") == D("5.01")
        assert amount(t, "150") == D("5.5")

    def test_first_tier_flat_fee_charged_once_any_unit_is_used(self):
        t = terms(
            "graduated",
            graduated_ranges=[
                {"from_value": 0, "to_value": 5, "per_unit_amount": "0", "flat_amount": "10"},
                {"from_value": 5, "to_value": None, "per_unit_amount": "1", "flat_amount": "0"},
            ],
        )
        assert amount(t, "0") == 0
        assert amount(t, "0.1") == D("10")
        assert amount(t, "5") == D("10")
        assert amount(t, "7") == D("12")

    def test_free_units_shift_the_tiers(self):
        t = terms("graduated", free_units=5, **CLASSIC_GRADUATED)
        assert amount(t, "5") == 0
        assert amount(t, "15") == D("10")
        assert amount(t, "16") == D("12.5")

    def test_sub_cent_tier_prices(self):
        t = terms(
            "graduated",
            graduated_ranges=[
                {"from_value": 0, "to_value": 1000, "per_unit_amount": "0.0075", "flat_amount": "0"},
                {"from_value": 1000, "to_value": None, "per_unit_amount": "0.00125", "flat_amount": "0.005"},
            ],
        )
        assert amount(t, "1") == D("0.0075")
        assert amount(t, "1001") == D("7.50625")  # 7.5 + 0.00125 + 0.005


# ----------------------------------------------------------------- volume

CLASSIC_VOLUME = {
    "volume_ranges": [
        {"from_value": 0, "to_value": 100, "per_unit_amount": "2", "flat_amount": "1"},
        {"from_value": 101, "to_value": 200, "per_unit_amount": "1", "flat_amount": "0"},
        {"from_value": 201, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "50"},
    ]
}
ADJACENT_VOLUME = {
    "volume_ranges": [
        {"from_value": 0, "to_value": 100, "per_unit_amount": "2", "flat_amount": "1"},
        {"from_value": 100, "to_value": 200, "per_unit_amount": "1", "flat_amount": "0"},
        {"from_value": 200, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "50"},
    ]
}


class TestVolume:
    @pytest.mark.parametrize("props", [CLASSIC_VOLUME, ADJACENT_VOLUME], ids=["classic", "adjacent"])
    @pytest.mark.parametrize(
        "units,expected",
        [
            ("0", "0"),  # no usage, no tier reached, no flat fee
            ("1", "3"),
            ("100", "201"),  # last unit of tier 1
            ("100.5", "100.5"),  # tier 2 reached: all units at 1
            ("101", "101"),
            ("200", "200"),
            ("200.5", "150.25"),  # tier 3: 200.5*0.5 + 50
            ("201", "150.5"),
            ("1000", "550"),
        ],
    )
    def test_every_tier_boundary(self, props, units, expected):
        t = parse_charge_properties(charge_model="volume", properties=props)
        assert amount(t, units) == D(expected)

    def test_free_units(self):
        # The tier is chosen by the aggregated units (Lago's matching_range), the billable
        # units (after free units) are priced at it: free units never raise a bill.
        # (Choosing by the billable units billed 110 units 100 x 2 + 1 = 201, more than
        # the 110 x 1 = 110 of the same usage without free units.)
        t = terms("volume", free_units="10", **CLASSIC_VOLUME)
        assert amount(t, "10") == 0
        assert amount(t, "100") == D("181")  # tier 1: 90 x 2 + 1
        assert amount(t, "110") == D("100")  # tier 2: 100 x 1
        assert amount(t, "111") == D("101")
        without = terms("volume", **CLASSIC_VOLUME)
        for units in ("5", "100", "101", "110", "200", "201", "250"):
            assert amount(t, units) <= amount(without, units)

    def test_single_open_range(self):
        t = terms(
            "volume",
            volume_ranges=[{"from_value": 0, "to_value": None, "per_unit_amount": "0.0075", "flat_amount": "0"}],
        )
        assert amount(t, "3") == D("0.0225")


# ----------------------------------------------------------------- validation


class TestValidation:
    @pytest.mark.parametrize("bad", [0.05, 5, None, "", "abc", "-1", "NaN", "Infinity", "1e", True, [], {}])
    def test_standard_amount_must_be_a_non_negative_decimal_string(self, bad):
        assert errors_of("standard", {"amount": bad}) == {"amount": ["invalid_amount"]}

    @pytest.mark.parametrize("bad", ["0.00000000001", "1000000000000000000", "1e-11"])
    def test_amount_beyond_what_the_database_stores_exactly(self, bad):
        # 10 decimal places and 18 integer digits (NUMERIC(28, 10)): refused, never rounded
        assert errors_of("standard", {"amount": bad}) == {"amount": ["invalid_amount"]}

    def test_amount_at_the_storage_limits(self):
        assert terms("standard", amount="0.0000000001").amount == D("1E-10")
        assert terms("standard", amount="999999999999999999.9999999999").amount == D("999999999999999999.9999999999")
        assert terms("standard", amount="0.50000000000000").amount == D("0.5")  # trailing zeros are exact

    def test_standard_missing_amount(self):
        assert errors_of("standard", {}) == {"amount": ["invalid_amount"]}

    def test_amount_accepts_scientific_and_spaces_as_decimal(self):
        assert terms("standard", amount="7.5E-3").amount == D("0.0075")

    @pytest.mark.parametrize("bad", [0, -3, "3600", "x", 1.5, True])
    def test_unit_batch(self, bad):
        if bad == "3600":
            assert terms("standard", amount="1", unit_batch="3600").unit_batch == D(3600)
            return
        assert errors_of("standard", {"amount": "1", "unit_batch": bad}) == {"unit_batch": ["invalid_unit_batch"]}

    def test_unit_batch_only_on_standard(self):
        details = errors_of("package", {"amount": "1", "package_size": 10, "free_units": 0, "unit_batch": 60})
        assert details == {"unit_batch": ["not_compatible_with_charge_model"]}

    @pytest.mark.parametrize("bad", [-1, "x", 1.5, True])
    def test_free_units(self, bad):
        assert errors_of("standard", {"amount": "1", "free_units": bad}) == {"free_units": ["invalid_free_units"]}

    def test_package_all_codes_at_once(self):
        details = errors_of("package", {"amount": 5, "package_size": 0, "free_units": -1})
        assert details == {
            "amount": ["invalid_amount"],
            "package_size": ["invalid_package_size"],
            "free_units": ["invalid_free_units"],
        }

    @pytest.mark.parametrize("bad", [None, 0, -5, "1000", 10.0, True])
    def test_package_size(self, bad):
        props = {"amount": "1", "free_units": 0, "package_size": bad}
        assert errors_of("package", props) == {"package_size": ["invalid_package_size"]}

    def test_package_free_units_integer_only_like_lago(self):
        props = {"amount": "1", "free_units": "10", "package_size": 5}
        assert errors_of("package", props) == {"free_units": ["invalid_free_units"]}

    @pytest.mark.parametrize("model,key", [("graduated", "graduated_ranges"), ("volume", "volume_ranges")])
    @pytest.mark.parametrize(
        "ranges",
        [
            [{"from_value": 1, "to_value": None}],  # does not start at 0
            [{"from_value": 0, "to_value": 10}],  # last to_value not null
            [{"from_value": 0, "to_value": 10}, {"from_value": 12, "to_value": None}],  # gap
            [{"from_value": 0, "to_value": 10}, {"from_value": 9, "to_value": None}],  # overlap
            [{"from_value": 0, "to_value": 0}, {"from_value": 1, "to_value": None}],  # empty tier
            [{"from_value": 0, "to_value": None}, {"from_value": 1, "to_value": None}],  # null in middle
            [{"from_value": "0", "to_value": None}],  # bounds must be integers
            [{"from_value": 0.0, "to_value": None}],
            ["not a range"],
        ],
    )
    def test_range_bounds(self, model, key, ranges):
        for r in ranges:
            if isinstance(r, dict):
                r.update(per_unit_amount="1", flat_amount="0")
        assert errors_of(model, {key: ranges}) == {key: [f"invalid_{key}"]}

    @pytest.mark.parametrize("model,key", [("graduated", "graduated_ranges"), ("volume", "volume_ranges")])
    def test_missing_ranges(self, model, key):
        assert errors_of(model, {}) == {key: [f"missing_{key}"]}
        assert errors_of(model, {key: []}) == {key: [f"missing_{key}"]}

    @pytest.mark.parametrize("model,key", [("graduated", "graduated_ranges"), ("volume", "volume_ranges")])
    def test_range_amounts_are_strings(self, model, key):
        ranges = [
            {"from_value": 0, "to_value": 10, "per_unit_amount": 1, "flat_amount": "0"},
            {"from_value": 11, "to_value": None, "per_unit_amount": "1", "flat_amount": -2},
        ]
        assert errors_of(model, {key: ranges}) == {
            "per_unit_amount": ["invalid_amount"],
            "flat_amount": ["invalid_amount"],
        }

    def test_unknown_model(self):
        assert errors_of("fancy", {"rate": "1"}) == {"charge_model": ["value_is_invalid"]}

    def test_a_lago_model_not_built_is_not_supported(self):
        assert errors_of("percentage", {"rate": "1"}) == {"charge_model": ["not_supported"]}

    def test_properties_must_be_an_object(self):
        assert errors_of("standard", ["amount"]) == {"properties": ["invalid_properties"]}

    def test_grouped_pricing_is_refused_not_ignored(self):
        details = errors_of("standard", {"amount": "1", "pricing_group_keys": ["region"]})
        assert details == {"pricing_group_keys": ["not_supported"]}

    def test_foreign_keys_are_ignored_like_lago(self):
        t = terms("standard", amount="1", package_size=10, graduated_ranges="junk")
        assert t == ChargeTerms("standard", amount=D("1"))


# ----------------------------------------------------------------- render round trip


@pytest.mark.parametrize(
    "model,props",
    [
        ("standard", {"amount": "0.0075", "unit_batch": 3600, "free_units": 360000}),
        ("standard", {"amount": "0.05"}),
        ("standard", {"amount": "1", "free_units": "0.5", "unit_batch": "2.5"}),
        ("package", {"amount": "5", "free_units": 100, "package_size": 1000}),
        ("graduated", CLASSIC_GRADUATED),
        ("graduated", dict(ADJACENT_GRADUATED, free_units=3)),
        ("volume", CLASSIC_VOLUME),
    ],
)
def test_properties_round_trip(model, props):
    t = parse_charge_properties(charge_model=model, properties=props)
    rendered = terms_to_properties(t)
    assert rendered == props
    assert parse_charge_properties(charge_model=model, properties=rendered) == t


def test_rendering_is_canonical():
    t = parse_charge_properties(charge_model="standard", properties={"amount": "0.050000", "unit_batch": "3600.0"})
    assert terms_to_properties(t) == {"amount": "0.05", "unit_batch": 3600}
    t = parse_charge_properties(charge_model="package", properties={"amount": "5.00", "package_size": 10})
    assert terms_to_properties(t) == {"amount": "5", "free_units": 0, "package_size": 10}
