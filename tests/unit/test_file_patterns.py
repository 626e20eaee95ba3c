"""ssftp.file_patterns: which names an account's filePatterns refuse, and why."""

from __future__ import annotations

import pytest

from ssftp.file_patterns import NameRules, rules_by_directory


def rules(**by_directory: tuple[list[str], list[str]]):
    """Rules from ``directory=(allowed, denied)``; ``root`` is the account's own."""
    made = rules_by_directory({
        () if name == "root" else tuple(name.split("__")): NameRules.of(allowed, denied)
        for name, (allowed, denied) in by_directory.items()})
    assert made is not None
    return made


@pytest.mark.parametrize("name", ["x.exe", "SETUP.EXE", "Setup.Exe", "a.b.exe"])
def test_a_denied_pattern_refuses_in_any_letter_case(name: str):
    refusal = rules(root=([], ["*.EXE", "*.bat"])).refusal("/", name)
    assert refusal == "name refused by filePatterns: *.EXE"


@pytest.mark.parametrize("name", ["x.exe.txt", "exe", "x.ex", "x.csv"])
def test_names_that_match_no_denied_pattern_pass(name: str):
    assert rules(root=([], ["*.exe"])).refusal("/", name) is None


def test_with_allowed_patterns_a_name_must_match_one_and_denied_still_wins():
    account = rules(root=(["*.csv", "report-??.txt"], ["secret*"]))
    assert account.refusal("/", "Q1.CSV") is None
    assert account.refusal("/", "report-01.txt") is None
    assert account.refusal("/", "report-001.txt") == (
        "name refused by filePatterns: not one of *.csv, report-??.txt")
    assert account.refusal("/", "secret.csv") == "name refused by filePatterns: secret*"


def test_a_directory_is_held_to_the_denied_patterns_only():
    account = rules(root=(["*.csv"], ["*.exe"]))
    assert account.refusal("/", "reports", directory=True) is None
    assert account.refusal("/", "reports") is not None
    assert account.refusal("/", "tools.exe", directory=True) == (
        "name refused by filePatterns: *.exe")


def test_the_deepest_configured_directory_applies_in_place_of_the_account():
    account = rules(root=([], ["*.exe"]), reports=(["*.csv"], []),
                    reports__open=([], []), other=([], ["*.zip"]))
    assert account.refusal("/", "x.exe") is not None
    assert account.refusal("/elsewhere/deep", "x.exe") is not None  # the account's own
    # reports: its own rules only, the account's *.exe no longer among them but *.csv is.
    assert account.refusal("/reports", "x.csv") is None
    assert account.refusal("/reports/2024", "x.txt") == (
        "name refused by filePatterns: not one of *.csv")
    # reports/open: listed with no patterns, so nothing is refused below it.
    assert account.refusal("/reports/open", "x.exe") is None
    assert account.refusal("/reports/open/more", "x.exe") is None
    assert account.refusal("/other", "x.exe") is None
    assert account.refusal("/other", "x.zip") is not None
    # Letter case of directories is the disk's: /Reports is not reports.
    assert account.refusal("/Reports", "x.txt") is None
    assert account.refusal("/reports-old", "x.txt") is None


def test_only_sub_directory_rules_leave_the_rest_of_the_account_free():
    account = rules(root=([], []), incoming=([], ["*.exe"]))
    assert account.refusal("/", "x.exe") is None
    assert account.refusal("/incoming", "x.exe") is not None


def test_shell_pattern_syntax_and_names_with_special_characters():
    account = rules(root=([], ["[ab]*.tmp", "*[*]*", "~$*"]))
    assert account.refusal("/", "A1.tmp") is not None
    assert account.refusal("/", "c1.tmp") is None
    assert account.refusal("/", "x*y") is not None
    assert account.refusal("/", "~$report.docx") is not None
    assert account.refusal("/", "(1).tmp") is None  # regex characters are literal


def test_no_patterns_anywhere_is_no_rules_at_all():
    assert rules_by_directory({(): NameRules.of([], [])}) is None
    assert rules_by_directory({(): NameRules.of([], []), ("a",): NameRules.of([], [])}) is None
