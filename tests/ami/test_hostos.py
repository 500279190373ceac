"""ami/hostos.py: what differs between AL2023, Ubuntu 24.04 and Debian 12, and nothing else.

The tuning renders once: every file but the OS's own ones is byte-for-byte the same for every
OS. The GRUB drop-in is real POSIX sh that dash and bash source to the expected command line,
without duplicates, after the cloud images' own drop-ins; lowlat-apply-kernel-args runs
update-grub (a miniature of it) and refuses a grub.cfg that lost the arguments. The package
commands are rehearsed with stubbed package managers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ami import render as r
from ami.check import check_host
from ami.hostos import ADAPTERS, AGENT_CTL, BAKEABLE, DEPLOYABLE, GRUB_CFG, GRUB_DROPIN, host_os
from contracts.profile import HOST_OSES, TuningProfile
from tests.support.paths import REPO
from tests.support.rehearse import UPDATE_GRUB, rehearse, tree

ARGS = TuningProfile.for_vcpus(4).kernel_args()
# Ubuntu 24.04's cloud image assigns the default command line outright in a drop-in
CLOUDIMG = "console=tty1 console=ttyS0 nvme_core.io_timeout=4294967295"
SH = "/bin/sh"  # dash on Debian, as grub-mkconfig runs it there and on Ubuntu


def profile(os_name: str) -> TuningProfile:
    return TuningProfile.for_vcpus(4, os=os_name)


def own_files(os_name: str) -> set[str]:
    """The files that exist or differ because of the OS."""
    system = ADAPTERS[os_name]
    found = {system.irqbalance_conf, r.APPLY_KERNEL_ARGS}
    return found | {p for p in (system.grub_dropin, system.chrony_sources) if p}


def test_every_os_of_the_profile_has_an_adapter_and_the_image_pipeline_offers_two():
    assert set(ADAPTERS) == set(HOST_OSES)
    assert DEPLOYABLE == ("al2023", "ubuntu2404", "debian12")
    assert BAKEABLE == ("al2023", "ubuntu2404")
    assert ADAPTERS["ubuntu2404"].ssm_image_parameter == (
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"
    )
    assert {n: a.python for n, a in ADAPTERS.items()} == {
        "al2023": "python3.11",
        "ubuntu2404": "python3.12",
        "debian12": "python3.11",
    }


@pytest.mark.parametrize("os_name", ["ubuntu2404", "debian12"])
def test_the_tuning_renders_once_only_the_os_files_differ(os_name):
    al2023, other = r.render(profile("al2023")), r.render(profile(os_name))
    shared = set(al2023) - own_files("al2023")
    assert shared == set(other) - own_files(os_name)
    assert {path: other[path] for path in shared} == {path: al2023[path] for path in shared}
    system = host_os(profile(os_name))
    assert system.irqbalance_conf == "/etc/default/irqbalance"
    assert "IRQBALANCE_BANNED_CPULIST=1-3\n" in other[system.irqbalance_conf]
    assert "/etc/sysconfig/irqbalance" not in other
    assert other[GRUB_DROPIN] == r.grub_dropin(profile(os_name))
    assert "server 169.254.169.123 prefer iburst" in other[str(system.chrony_sources)]
    assert (
        "update-grub" in other[r.APPLY_KERNEL_ARGS] and "grubby" not in other[r.APPLY_KERNEL_ARGS]
    )


def test_al2023_keeps_its_paths_and_grubby():
    files = r.render(profile("al2023"))
    assert "IRQBALANCE_BANNED_CPULIST=1-3\n" in files["/etc/sysconfig/irqbalance"]
    assert not [p for p in files if p.startswith(("/etc/default/", "/etc/chrony"))]
    assert 'grubby --update-kernel=ALL --args="$args"' in files[r.APPLY_KERNEL_ARGS]


# ------------------------------------------------------------------------- the GRUB drop-in


def _source(dropin: Path, shell: str, before: str | None, times: int = 1) -> str:
    """GRUB_CMDLINE_LINUX_DEFAULT after ``shell`` sources the drop-in ``times`` times under
    set -eu (grub-mkconfig's own -e, and -u for a drop-in that reads an unset variable)."""
    setup = "" if before is None else f"GRUB_CMDLINE_LINUX_DEFAULT='{before}'\n"
    sources = f". {dropin}\n" * times
    script = f'set -eu\n{setup}{sources}printf "%s" "$GRUB_CMDLINE_LINUX_DEFAULT"'
    result = subprocess.run([shell, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def dropin(tmp_path) -> Path:
    path = tmp_path / "99-lowlat.cfg"
    path.write_text(r.grub_dropin(profile("ubuntu2404")))
    return path


@pytest.mark.parametrize("shell", ["bash", SH])
def test_the_dropin_is_valid_shell(dropin, shell):
    result = subprocess.run([shell, "-n", str(dropin)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("shell", ["bash", SH])
@pytest.mark.parametrize(
    ("before", "kept"),
    [
        (None, ""),  # unset
        ("", ""),
        (CLOUDIMG, CLOUDIMG),  # appended to the cloud image's line, which it keeps
        # our names win: an older isolcpus=, hugepages= or a bare nosoftlockup is replaced once
        ("quiet isolcpus=2 nosoftlockup hugepages=64 splash", "quiet splash"),
        ("a=* [x] ?", "a=* [x] ?"),  # words that look like globs stay words
    ],
)
def test_sourcing_the_dropin_gives_our_args_once(dropin, shell, before, kept):
    expected = " ".join([*kept.split(), *ARGS])
    assert _source(dropin, shell, before) == expected
    assert _source(dropin, shell, before, times=2) == expected  # sourced again: no duplicate


def test_the_dropin_quotes_what_it_takes_from_the_profile():
    text = r.grub_dropin(profile("debian12"))
    assert f"lowlat_args='{' '.join(ARGS)}'\n" in text  # one single-quoted word of data
    assert text.count(ARGS[0]) == 1


# -------------------------------------------------------------- python -m ami apply --os debian12


def _apply(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ami", "apply", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize("how", ["flag", "profile"])
def test_apply_for_debian12_renders_a_dropin_that_passes_a_syntax_check(tmp_path, how):
    root = tmp_path / "root"
    if how == "flag":
        result = _apply("--root", str(root), "--vcpus", "4", "--os", "debian12")
    else:
        path = tmp_path / "profile.toml"
        path.write_text('vcpus = 4\nos = "debian12"\n')
        result = _apply("--root", str(root), "--profile", str(path))
    assert result.returncode == 0, result.stderr
    dropin = root / GRUB_DROPIN.lstrip("/")
    for shell in ("bash", SH):  # without update-grub: the syntax, then what it yields
        check = subprocess.run([shell, "-n", str(dropin)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert _source(dropin, shell, "quiet") == " ".join(["quiet", *ARGS])
    assert (root / "etc/default/irqbalance").is_file()
    assert not (root / "etc/sysconfig").exists()
    assert (root / "etc/chrony/sources.d/lowlat-aws.sources").is_file()


def test_apply_refuses_an_unknown_os(tmp_path):
    result = _apply("--root", str(tmp_path / "root"), "--os", "centos7")
    assert result.returncode == 2
    assert "invalid choice: 'centos7'" in result.stderr


# ------------------------------------------------ lowlat-apply-kernel-args through update-grub


def grub_host(root: Path, os_name: str = "ubuntu2404", booted: str = "") -> Path:
    """A scratch root with the tuning applied for ``os_name`` and GRUB as a cloud image has it."""
    for path, text in r.render(profile(os_name)).items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n')
    (root / "etc/default/grub.d/50-cloudimg-settings.cfg").write_text(
        f'GRUB_CMDLINE_LINUX_DEFAULT="{CLOUDIMG}"\n'
    )
    (root / "boot/grub").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "proc/cmdline").write_text(f"BOOT_IMAGE=/vmlinuz root=LABEL=root ro {booted}\n")
    return root


def _apply_kernel_args(root: Path, os_name: str = "ubuntu2404"):
    script = r.apply_kernel_args_script(profile(os_name))
    return rehearse(script, root, ("update-grub",), effects={"update-grub": UPDATE_GRUB})


def _linux_line(root: Path) -> list[str]:
    (line,) = [x for x in (root / GRUB_CFG.lstrip("/")).read_text().splitlines() if "linux" in x]
    return line.split()


@pytest.mark.parametrize("os_name", ["ubuntu2404", "debian12"])
def test_update_grub_puts_the_args_after_the_cloud_images_and_again_changes_nothing(
    tmp_path, os_name
):
    root = grub_host(tmp_path / "root", os_name)
    first = _apply_kernel_args(root, os_name)
    assert first.result.returncode == 0, first.result.stderr
    assert first.calls == [["update-grub"]] and first.unexpected == []
    assert "reboot needed for: isolcpus=managed_irq,domain,1-3" in first.result.stdout
    words = _linux_line(root)
    assert words[-len(ARGS) - 3 :] == [*CLOUDIMG.split(), *ARGS]  # after 50-cloudimg-settings
    assert "quiet" not in words  # 50-cloudimg-settings replaced /etc/default/grub's line

    before = tree(root)
    again = _apply_kernel_args(root, os_name)
    assert again.result.returncode == 0, again.result.stderr
    assert tree(root) == before  # the same grub.cfg: no argument twice
    assert all(_linux_line(root).count(arg) == 1 for arg in ARGS)


def test_no_reboot_needed_once_booted_with_the_args(tmp_path):
    root = grub_host(tmp_path / "root", booted=" ".join(ARGS))
    run = _apply_kernel_args(root)
    assert run.result.returncode == 0, run.result.stderr
    assert "no reboot needed" in run.result.stdout


def test_a_later_dropin_that_resets_the_line_is_caught_before_any_reboot(tmp_path):
    root = grub_host(tmp_path / "root")
    (root / "etc/default/grub.d/zz-vendor.cfg").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    run = _apply_kernel_args(root)
    assert run.result.returncode == 1
    assert "the default entry in /boot/grub/grub.cfg lacks isolcpus=" in run.result.stderr
    assert "reboot needed" not in run.result.stdout


def test_without_the_dropin_update_grub_is_not_run(tmp_path):
    root = grub_host(tmp_path / "root")
    (root / GRUB_DROPIN.lstrip("/")).unlink()
    run = _apply_kernel_args(root)
    assert run.result.returncode == 1 and run.calls == []
    assert f"no {GRUB_DROPIN}" in run.result.stderr


# ----------------------------------------------------------------------------- packages


def _install(os_name: str, root: Path, installed: tuple[str, ...] = ()):
    script = 'set -euo pipefail\nroot="${LOWLAT_ROOT:-}"\n'
    script += "\n".join(ADAPTERS[os_name].install_commands())
    return rehearse(script, root, ("dnf", "apt-get", "curl", "rm"), installed=installed)


def test_al2023_installs_with_one_dnf_command(tmp_path):
    run = _install("al2023", tmp_path / "root")
    assert run.result.returncode == 0, run.result.stderr
    packages = ["python3.11", "python3.11-pip", "amazon-cloudwatch-agent", "irqbalance"]
    assert run.calls == [["dnf", "install", "-y", *packages, "ethtool", "chrony", "nftables"]]


@pytest.mark.parametrize(("os_name", "distro"), [("ubuntu2404", "ubuntu"), ("debian12", "debian")])
def test_apt_installs_the_os_python_and_the_agents_deb_while_it_is_missing(
    tmp_path, os_name, distro
):
    system = ADAPTERS[os_name]
    run = _install(os_name, tmp_path / "root")
    assert run.result.returncode == 0, run.result.stderr
    apt = run.called("apt-get")
    assert [c[-1] for c in apt[:1]] == ["update"]
    install = apt[1]
    assert install[install.index("install") :][:4] == [
        "install",
        "-y",
        "--no-install-recommends",
        "--no-upgrade",  # an installed package stays as it is on a re-run
    ]
    wanted = [*system.python_packages, *system.packages]
    assert install[-len(wanted) :] == wanted and "nftables" in wanted
    assert {"DPkg::Lock::Timeout=600", "Dpkg::Options::=--force-confold"} <= set(install)
    deb = f"{tmp_path}/root/var/tmp/lowlat-amazon-cloudwatch-agent.deb"
    (curl,) = run.called("curl")
    url = f"https://amazoncloudwatch-agent.s3.amazonaws.com/{distro}/arm64/latest/"
    assert curl[-1] == url + "amazon-cloudwatch-agent.deb" and curl[-2] == deb
    assert apt[2][-1] == deb and run.called("rm") == [["rm", "-f", deb]]

    # the agent is there now (as the .deb put it): a second run fetches nothing
    again = _install(os_name, tmp_path / "root", installed=(AGENT_CTL,))
    assert again.result.returncode == 0, again.result.stderr
    assert again.calls == apt[:2]


# -------------------------------------------------------------------------- check-host


@pytest.mark.parametrize("os_name", HOST_OSES)
def test_check_host_reads_the_ban_where_the_os_keeps_it(tmp_path, os_name):
    root = tmp_path / "root"
    conf = root / host_os(profile(os_name)).irqbalance_conf.lstrip("/")
    conf.parent.mkdir(parents=True)
    conf.write_text(r.irqbalance_conf(profile(os_name)))
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/irqbalance").write_text("")
    report = check_host(root, profile(os_name), irq_window_s=0)
    assert report.check("irqbalance_ban").status == "pass"
    conf.unlink()
    report = check_host(root, profile(os_name), irq_window_s=0)
    detail = report.check("irqbalance_ban").detail
    assert detail.startswith(f"no {host_os(profile(os_name)).irqbalance_conf}: ")
