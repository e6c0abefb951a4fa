from tests.api.conftest import catalogue, lago, other_lago, subscription  # noqa: F401 (fixtures)
