import pytest

from nucseg.split import split_ids


def test_fractions_disjoint_and_complete():
    ids = [f"id{i:03d}" for i in range(670)]
    train, val, test = split_ids(ids, 0.1, 0.1, seed=42)
    assert (len(train), len(val), len(test)) == (536, 67, 67)
    assert set(train) | set(val) | set(test) == set(ids)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    # unequal fractions: val and test are not swapped
    train, val, test = split_ids(ids[:100], val=0.2, test=0.1, seed=0)
    assert (len(train), len(val), len(test)) == (70, 20, 10)


def test_seeded_and_order_independent():
    ids = [f"id{i:03d}" for i in range(50)]
    a = split_ids(ids, seed=1)
    assert split_ids(list(reversed(ids)), seed=1) == a
    assert split_ids(ids, seed=2) != a


@pytest.mark.parametrize("val, test", [(0.6, 0.5), (0.5, 0.5), (-0.1, 0.1), (0.1, 1.0)])
def test_bad_fractions(val, test):
    with pytest.raises(ValueError, match=r"must be fractions with val \+ test < 1"):
        split_ids(["a", "b"], val=val, test=test)
