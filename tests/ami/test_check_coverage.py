"""check-host covers at least 20 of the 28 categories the AWS sample's OS validation checks
(ami/check/coverage.py), with checks that exist and give a verdict or a reason."""

from __future__ import annotations

from ami.check import check_host
from ami.check.coverage import COVERAGE, SAMPLE_CATEGORIES, UNCOVERED, covered
from tests.support.host_tree import tuned_tree

MIN_COVERED = 20


def test_the_sample_has_28_categories_and_each_is_accounted_for():
    assert len(SAMPLE_CATEGORIES) == len(set(SAMPLE_CATEGORIES)) == 28
    mapped = {c for categories in COVERAGE.values() for c in categories}
    assert mapped <= set(SAMPLE_CATEGORIES), mapped - set(SAMPLE_CATEGORIES)
    assert covered() | set(UNCOVERED) == set(SAMPLE_CATEGORIES)
    assert not covered() & set(UNCOVERED)


def test_at_least_20_categories_are_covered():
    count = len(covered())
    print(f"\ncheck-host covers {count} of {len(SAMPLE_CATEGORIES)} categories")  # pytest -s
    for category in SAMPLE_CATEGORIES:
        ours = [name for name, cats in COVERAGE.items() if category in cats]
        print(f"  {category:24} {', '.join(ours) or UNCOVERED[category]}")
    assert count >= MIN_COVERED


def test_every_mapped_check_exists_and_says_something(tmp_path):
    """A category counts only through a check check-host really runs; one that is not
    applicable on a tuned host must say why."""
    report = check_host(tuned_tree(tmp_path), irq_window_s=0.01)
    names = {c.name for c in report.checks}
    assert set(COVERAGE) <= names, set(COVERAGE) - names
    for name in COVERAGE:
        c = report.check(name)
        assert c.status in ("pass", "not_applicable"), c
        assert c.status == "pass" or c.detail, c


def test_the_count_sees_a_missing_check():
    """The floor can fail: without the checks added for it, coverage drops below 20."""
    first = {
        "cmdline",
        "isolated",
        "nohz_full",
        "hugepages",
        "thp",
        "sysctls",
        "irqs_on_isolated",
        "kthreads_on_isolated",
        "irqbalance_ban",
        "governor",
        "cstates",
        "smt",
    }
    before = {c for name in first for c in COVERAGE.get(name, ())}
    assert len(before) < MIN_COVERED
