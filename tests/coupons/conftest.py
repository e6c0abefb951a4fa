from tests.api.conftest import lago, other_lago  # noqa: F401 (fixtures)
