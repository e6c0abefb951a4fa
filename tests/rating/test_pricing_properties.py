"""Property-based tests (hypothesis) for metering.pricing."""

from decimal import Decimal as D

from hypothesis import assume, given
from hypothesis import strategies as st

from metering.pricing import ChargeTerms, Tier, parse_charge_properties, price_units, terms_to_properties

MICRO = D("0.000001")



def dec(max_value, places):
    return st.decimals(min_value=0, max_value=max_value, places=places, allow_nan=False, allow_infinity=False)


units_st = dec(10**9, 6)
price_st = dec(1000, 6)


@st.composite
def tier_lists(draw, *, adjacent=None, zero_flat=False):
    count = draw(st.integers(min_value=1, max_value=5))
    adjacent = draw(st.booleans()) if adjacent is None else adjacent
    tiers = []
    lower = 0
    for index in range(count):
        from_value = 0 if index == 0 else (lower if adjacent else lower + 1)
        is_last = index == count - 1
        to_value = None if is_last else from_value + draw(st.integers(min_value=1, max_value=10**6))
        tiers.append(
            {
                "from_value": from_value,
                "to_value": to_value,
                "per_unit_amount": str(draw(price_st)),
                "flat_amount": "0" if zero_flat else str(draw(dec(100, 4))),
            }
        )
        lower = to_value
    return tiers


free_st = st.one_of(st.just(0), st.integers(min_value=0, max_value=10**6))


@st.composite
def any_terms(draw, models=("standard", "package", "graduated", "volume")):
    model = draw(st.sampled_from(models))
    free = draw(free_st)
    if model == "standard":
        props = {"amount": str(draw(price_st)), "free_units": free}
        if draw(st.booleans()):
            props["unit_batch"] = draw(st.integers(min_value=1, max_value=10**5))
    elif model == "package":
        props = {
            "amount": str(draw(price_st)),
            "free_units": free,
            "package_size": draw(st.integers(min_value=1, max_value=10**5)),
        }
    else:
        props = {f"{model}_ranges": draw(tier_lists()), "free_units": free}
    return parse_charge_properties(charge_model=model, properties=props)


def price(terms, units):
    return price_units(terms=terms, units=units).amount


@given(any_terms(), units_st)
def test_never_negative_and_six_places(terms, units):
    priced = price_units(terms=terms, units=units)
    assert priced.amount >= 0
    assert priced.billable_units >= 0
    assert priced.amount == priced.amount.quantize(MICRO)


@given(any_terms(models=("standard", "package", "graduated")), units_st, units_st)
def test_monotone_in_units(terms, a, b):
    low, high = sorted((a, b))
    assert price(terms, low) <= price(terms, high)


@given(st.data())
def test_volume_monotone_within_a_tier(data):
    # Volume pricing is NOT monotone across tiers by design (more units can
    # reach a cheaper tier); within one tier it is.
    ranges = data.draw(tier_lists())
    terms = parse_charge_properties(charge_model="volume", properties={"volume_ranges": ranges})
    lower = D(0)
    for tier in terms.tiers:
        upper = D(tier.to_value) if tier.to_value is not None else lower + D(10**6)
        a = data.draw(st.decimals(min_value=lower, max_value=upper, places=6).filter(lambda v: v > lower))
        b = data.draw(st.decimals(min_value=a, max_value=upper, places=6))
        assert price(terms, a) <= price(terms, b)
        lower = upper


@given(st.data())
def test_graduated_continuous_across_tier_edges(data):
    ranges = data.draw(tier_lists(zero_flat=data.draw(st.booleans())))
    assume(len(ranges) > 1)
    free = data.draw(free_st)
    terms = parse_charge_properties(
        charge_model="graduated", properties={"graduated_ranges": ranges, "free_units": free}
    )
    delta = data.draw(st.decimals(min_value=D("0.000001"), max_value=D("0.5"), places=6))
    for index, tier in enumerate(terms.tiers[:-1]):
        edge = D(tier.to_value) + free
        nxt = terms.tiers[index + 1]
        at_edge = price(terms, edge)
        below = price(terms, edge - delta)
        above = price(terms, edge + delta)
        # Approaching the edge from below: only this tier's unit price applies.
        assert abs((at_edge - below) - delta * tier.per_unit_amount) <= MICRO
        # Crossing it: the next tier's flat fee once, then its unit price.
        assert abs((above - at_edge) - (nxt.flat_amount + delta * nxt.per_unit_amount)) <= MICRO
        if all(t.flat_amount == 0 for t in terms.tiers):
            max_price = max(t.per_unit_amount for t in terms.tiers)
            assert abs(above - below) <= 2 * delta * max_price + MICRO


@given(
    amount=price_st,
    free=free_st,
    size=st.integers(min_value=1, max_value=10**4),
    k=st.integers(min_value=0, max_value=10**4),
    data=st.data(),
)
def test_package_steps_only_at_package_boundaries(amount, free, size, k, data):
    terms = parse_charge_properties(
        charge_model="package", properties={"amount": str(amount), "free_units": free, "package_size": size}
    )
    start = D(free + k * size)
    end = start + size
    # Any two quantities inside (start, end] cost the same: k + 1 packages.
    u = data.draw(st.decimals(min_value=start, max_value=end, places=6).filter(lambda v: v > start))
    v = data.draw(st.decimals(min_value=start, max_value=end, places=6).filter(lambda v: v > start))
    assert price(terms, u) == price(terms, v) == (k + 1) * amount
    # The step happens exactly at the boundary.
    assert price(terms, end + MICRO) - price(terms, end) == amount
    assert price(terms, start) == k * amount


@given(any_terms(), units_st)
def test_free_units_honoured(terms, units):
    free = terms.free_units
    if units <= free:
        assert price(terms, units) == 0
        return
    without_free = ChargeTerms(**{**terms.__dict__, "free_units": D(0)})
    assert price_units(terms=terms, units=units) == price_units(terms=without_free, units=units - free)


@given(any_terms(), units_st, units_st)
def test_free_units_never_increase_the_amount(terms, extra_free, units):
    more_free = ChargeTerms(**{**terms.__dict__, "free_units": terms.free_units + extra_free})
    assert price(terms, units) >= price(more_free, units)


@given(
    amount=dec(1000, 4),
    values=st.lists(dec(10**6, 2), min_size=0, max_size=30),
)
def test_standard_sum_of_parts_equals_price_of_sum(amount, values):
    # Linear model, no free units, no rounding (2 dp x 4 dp = 6 dp): pricing
    # the aggregated units equals the sum of pricing each event's value.
    terms = parse_charge_properties(charge_model="standard", properties={"amount": str(amount)})
    assert price(terms, sum(values, D(0))) == sum((price(terms, v) for v in values), D(0))


@given(any_terms())
def test_render_then_parse_is_identity(terms):
    assert parse_charge_properties(charge_model=terms.charge_model, properties=terms_to_properties(terms)) == terms


def test_tier_dataclass_is_hashable():
    assert hash(Tier(0, None, D("1"), D("0")))
