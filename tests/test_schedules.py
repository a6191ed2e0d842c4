import numpy as np
import pytest

from jaxcollapse import ConfigError
from jaxcollapse.schedules import constant, explicit, geometric, linear, parse_schedule, power


def test_schedule_sizes():
    assert constant(10).sizes(3).tolist() == [10, 10, 10]
    assert linear(10, 5).sizes(4).tolist() == [10, 15, 20, 25]
    assert power(10, 2).sizes(3).tolist() == [10, 40, 90]
    assert geometric(10, 2).sizes(4).tolist() == [10, 20, 40, 80]
    assert explicit([3, 4, 5]).sizes(2).tolist() == [3, 4]
    assert constant(10).sizes(0).tolist() == []


def test_parse_schedule_round_trips():
    for text in ("constant", "linear:2.5", "power:1.5", "geometric:1.1", "list:5,6,7"):
        schedule = parse_schedule(text, 5)
        assert type(schedule).from_json(schedule.to_json()) == schedule
    np.testing.assert_array_equal(parse_schedule("list:5,6,7", 99).sizes(3), [5, 6, 7])


@pytest.mark.parametrize("text, match", [
    ("cubic", "unknown schedule"), ("linear:abc", "needs a number"), ("linear:-1", "slope"),
    ("power:-2", "exponent"), ("geometric:0.5", "ratio"), ("list:1,x", "integers"), ("list:", "at least one"),
    ("list:0,3", "schedule list entry"),
])
def test_bad_schedules(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_schedule(text, 10)


def test_list_too_short_and_overflow():
    with pytest.raises(ConfigError, match="generations need"):
        explicit([5, 6]).sizes(3)
    with pytest.raises(ConfigError, match="2\\*\\*31"):
        geometric(10, 10).sizes(20)
