"""ssftp.config.rules at scale: ten thousand accounts load, and the duplicates and overlaps among
them are found (the same ones a comparison of every pair finds) and reported in bounded lines."""

from __future__ import annotations

import pytest

from ssftp.config import parse_config
from ssftp.config.rules import MAX_REPORTED_OVERLAPS
from ssftp.errors import ConfigError


def many_accounts(count: int) -> list[str]:
    """``count`` accounts, half staging and half clean, each with its own directory."""
    lines = ["users:", "  stagingDir:"]
    lines += [f"    - {{directory: partner-{i}/in, auth: {{username: partner-{i}, "
              f"password: pw-{i}}}}}" for i in range(count // 2)]
    lines.append("  cleanDir:")
    lines += [f"    - {{directory: consumer-{i}, auth: {{username: consumer-{i}, "
              f"password: pw-{i}}}}}" for i in range(count // 2, count)]
    return lines


def test_ten_thousand_accounts_load() -> None:
    loaded = parse_config("\n".join(many_accounts(10_000)) + "\n", "many.yaml")
    users = loaded.config.users
    assert (len(users.staging_dir), len(users.clean_dir)) == (5_000, 5_000)
    assert users.staging_dir[4_999].directory == "partner-4999/in"
    assert users.clean_dir[-1].auth.username == "consumer-9999"
    assert len(loaded.warnings) == 10_000  # each plaintext password, and nothing else


def test_planted_duplicates_among_ten_thousand_accounts_are_found() -> None:
    lines = many_accounts(10_000)
    # Account i of stagingDir is on line 3 + i, account i of cleanDir on line 5004 + i.
    lines[2 + 4_000] = "    - {directory: partner-1234/in, auth: {username: dup-dir, password: p}}"
    lines[2 + 4_500] = "    - {directory: partner-42, auth: {username: partner-7, password: p}}"
    lines[2 + 5_001 + 4_000] = ("    - {directory: consumer-5001/sub, "
                                        "auth: {username: nested, password: p}}")
    with pytest.raises(ConfigError) as caught:
        parse_config("\n".join(lines) + "\n", "many.yaml")
    assert [issue.describe("many.yaml") for issue in caught.value.issues] == [
        "many.yaml:4003: users.stagingDir[4000].directory: 'partner-1234/in' is the same as "
        "'partner-1234/in' of users.stagingDir[1234]: accounts would see each other's files",
        "many.yaml:4503: users.stagingDir[4500].auth.username: username 'partner-7' is already "
        "used by users.stagingDir[7]",
        "many.yaml:4503: users.stagingDir[4500].directory: 'partner-42' overlaps "
        "'partner-42/in' of users.stagingDir[42]: accounts would see each other's files",
        "many.yaml:9004: users.cleanDir[4000].directory: 'consumer-5001/sub' overlaps "
        "'consumer-5001' of users.cleanDir[1]: accounts would see each other's files",
    ]


def naive_overlap_messages(directories: list[str], area: str) -> list[str]:
    """What comparing each account with every earlier one reports: the definition the sorted
    pass in ssftp.config.rules must match, message for message and in order."""
    messages = []
    for index, directory in enumerate(directories):
        for other_index, other in enumerate(directories[:index]):
            if "*" in (directory, other) or not (
                    directory == other or directory.startswith(other + "/")
                    or other.startswith(directory + "/")):
                continue
            what = "is the same as" if directory == other else "overlaps"
            messages.append(f"users.{area}[{index}].directory: {directory!r} {what} {other!r} of "
                            f"users.{area}[{other_index}]: accounts would see each other's files")
    return messages


def test_overlaps_are_the_ones_comparing_every_pair_finds() -> None:
    # Nested, repeated, sibling-prefixed ("a/b" and "a/bc") and wildcard directories, shuffled.
    names = ["a", "a/b", "a/bc", "a/b/c", "ab", "b", "b/a", "a/b", "*", "c/d/e", "c", "a-b"]
    directories = [names[(index * 7) % len(names)] + ("" if index % 3 else f"/x{index % 4}")
                   for index in range(30)]
    text = "users:\n  cleanDir:\n" + "".join(
        f"    - {{directory: {directory!r}, auth: {{username: u{index}, password: p}}}}\n"
        for index, directory in enumerate(directories))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "pairs.yaml")
    found = [f"{issue.dotted}: {issue.message}" for issue in caught.value.issues]
    expected = naive_overlap_messages(directories, "cleanDir")
    assert 20 < len(expected) <= MAX_REPORTED_OVERLAPS
    assert found == expected


def test_ten_thousand_accounts_on_one_directory_are_reported_in_bounded_lines() -> None:
    """n accounts on one directory are n·(n-1)/2 overlapping pairs (50 million here): the first
    ones are named, and one more line says the list is cut short."""
    text = "users:\n  stagingDir:\n" + "".join(
        f"    - {{directory: shared, auth: {{username: u{index}, password: p}}}}\n"
        for index in range(10_000))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "shared.yaml")
    issues = caught.value.issues
    assert len(issues) == MAX_REPORTED_OVERLAPS + 1
    assert all("'shared' is the same as 'shared' of users.stagingDir[" in issue.message
               for issue in issues[:-1])
    assert issues[-1].describe("shared.yaml") == (
        f"shared.yaml:2: users.stagingDir: more than {MAX_REPORTED_OVERLAPS} pairs of "
        "directories overlap; only those are listed")
