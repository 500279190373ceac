"""The EC2 Image Builder component that turns the stock arm64 image of the profile's OS (AL2023
or Ubuntu 24.04, ``ami.hostos``) into a tuned lowlat host.

``component_document(profile)`` is the component's YAML (schema 1.0); ``component_data`` the same
as a dict for the CDK app (TunedAmiStack). The phases:

- build: first refuse a kernel built without CONFIG_NO_HZ_FULL (``NOHZ_FULL_SCRIPT``: one line
  saying what to do), since nohz_full= would then silently do nothing. Install the OS's Python, the
  CloudWatch agent, irqbalance, ethtool, chrony and nftables (``HostOS.install_commands``: dnf, or
  apt and the agent's .deb); download the lowlat wheel (``WheelS3Uri``, a component parameter: the
  CDK stack uploads the wheel as an S3 asset and passes its URI) and install it into a release venv,
  ``<install_prefix>/releases/image``, with ``current`` pointing at it, the layout ``fab deploy``
  keeps, so the units find ``current/venv/bin/trading-service`` from the first boot and the first
  deploy swaps ``current`` as usual. pip fetches the wheel's dependencies, so the build instance
  needs a way to PyPI (or a mirror in pip.conf). Then write the profile to /etc/lowlat/profile.toml,
  ``python -m ami apply --root /`` with it, create the service user (``systemd-sysusers`` from the
  rendered sysusers.d file), install the CloudWatch agent's files (``ami.cloudwatch.agent_files``)
  and have the agent translate its config (a config it rejects fails the build), enable irqbalance,
  the agent, chrony, the tuning unit, the firewall and the check-host timer, write the kernel
  arguments with ``lowlat-apply-kernel-args`` (grubby, or the GRUB drop-in and update-grub) and
  reboot into them.
- validate (same build instance, after the reboot) and test (a fresh instance launched from
  the new image): ``trading-service check-host --profile /etc/lowlat/profile.toml --json``.
  ``CHECK_HOST_SCRIPT`` reads its exit status and its report and fails the step, and so the
  image, unless every check that applies to the host passed: a ``not_applicable`` check does
  not block, the checks in ``REQUIRED_HOST_CHECKS`` must pass outright (present, not "not
  applicable"), and a non-zero exit with a clean report blocks too.

The engine and telemetry units are not enabled: ``fab deploy`` starts them on a host that has a
release of its own. ``REQUIRED_FILES`` lists the files this document runs or reads that
``python -m ami apply`` must install (tests check it against ``ami.render.render``).

The document is small enough (about 9 kB) to pass inline as the component resource's ``Data``
(at most 16,000 characters). This module is light (PyYAML and the light modules of ami/ and
service/): the CDK app reads it.
"""

from __future__ import annotations

import shlex

import yaml

from ami import cloudwatch
from ami.hostos import AGENT_CTL, host_os
from ami.security import FIREWALL_UNIT_NAME
from ami.units import CHECK_HOST_TIMER_UNIT
from contracts.profile import INSTALLED_PROFILE, TuningProfile, profile_file

COMPONENT_NAME = "lowlat-tuned-host"
PROFILE_PATH = INSTALLED_PROFILE
APPLY_KERNEL_ARGS = "/usr/local/sbin/lowlat-apply-kernel-args"
KERNEL_ARGS_FILE = "/etc/lowlat/kernel-args"
TUNE_UNIT = "lowlat-tune.service"
WHEEL_PARAMETER = "WheelS3Uri"
DOWNLOAD_DIR = "/tmp/lowlat-dist"
CHECK_HOST_OUTPUT = "/tmp/lowlat-check-host.json"

# Files the document uses that the apply step (ami.render) installs.
REQUIRED_FILES = (APPLY_KERNEL_ARGS, KERNEL_ARGS_FILE)

# check-host checks that must pass outright on a tuned image: present and "pass" (every other
# check must pass too unless it is not applicable, as governor, C-states and SMT on Graviton)
REQUIRED_HOST_CHECKS = ("cmdline", "isolated", "hugepages")

# Reads `trading-service check-host --json` (argv[1]; ami.check.Report.to_json:
# {"checks": [{"name", "status", ...}]}, status "pass"/"fail"/"not_applicable"), its exit status
# (argv[2]) and the required checks (argv[3], comma-separated), and exits 1 unless every check
# that applies passed, every required one among them. Also accepts a bare list of checks or a
# mapping of name to a status or to {"status": ...}, so a format change fails loudly by name
# rather than with a traceback; a status it does not know blocks the image.
CHECK_HOST_SCRIPT = """\
import json, sys
path, exit_status, required = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
try:
    with open(path) as f:
        data = json.load(f)
except (OSError, ValueError) as exc:
    print(f"check-host exited {exit_status} without a JSON report: {exc}", file=sys.stderr)
    sys.exit(1)
checks = data.get("checks", data) if isinstance(data, dict) else data
if isinstance(checks, dict):
    items = checks.items()
else:
    items = [(c.get("name"), c) for c in checks]
status = {}
for name, value in items:
    value = value.get("status", value.get("ok")) if isinstance(value, dict) else value
    word = "pass" if value is True else str(value).lower()
    if word in ("pass", "passed", "ok"):
        status[name] = "pass"
    elif word in ("not_applicable", "n/a", "na"):
        status[name] = "not applicable"
    else:
        status[name] = f"FAIL ({value})"
for name in required:
    status.setdefault(name, "FAIL (not in the report)")
for name, state in status.items():
    print(f"check-host {name}: {state}")
failed_required = [n for n in required if status[n] != "pass"]
failed = [n for n, s in status.items() if s.startswith("FAIL") and n not in required]
if failed_required:
    print("required check-host checks failed: " + ", ".join(failed_required), file=sys.stderr)
if failed:
    print("check-host checks that apply to this host failed: " + ", ".join(failed), file=sys.stderr)
if not failed_required and not failed and exit_status != 0:
    print(f"check-host exited {exit_status} though no check failed", file=sys.stderr)
if failed_required or failed or exit_status != 0:
    sys.exit(1)
"""

# Build step 1. nohz_full= on a kernel built without CONFIG_NO_HZ_FULL is accepted and ignored:
# the tick keeps interrupting the isolated CPUs. Refuse such a kernel before anything is built,
# in one line that says what to do. LOWLAT_ROOT (unset on a host) prefixes every path, as in
# every lowlat script, so the tests can rehearse it.
NOHZ_FULL_SCRIPT = """\
set -euo pipefail
root="${LOWLAT_ROOT:-}"
release=$(uname -r)
if [[ -r "$root/boot/config-$release" ]]; then
    where="/boot/config-$release"
    config=$(<"$root$where")
elif [[ -r "$root/proc/config.gz" ]]; then
    where=/proc/config.gz
    config=$(gzip -dc "$root$where")
else
    echo "lowlat: cannot tell whether kernel $release has CONFIG_NO_HZ_FULL=y (no" \\
        "/boot/config-$release, no /proc/config.gz): use a parent image that ships its kernel" \\
        "config" >&2
    exit 1
fi
if [[ $'\\n'$config$'\\n' != *$'\\nCONFIG_NO_HZ_FULL=y\\n'* ]]; then
    echo "lowlat: kernel $release is built without CONFIG_NO_HZ_FULL=y ($where), so nohz_full=" \\
        "would leave the tick on the isolated CPUs: build from a parent image whose kernel has" \\
        "it, or install one and reboot into it before this component runs" >&2
    exit 1
fi
echo "kernel $release: CONFIG_NO_HZ_FULL=y ($where)"
"""


def release_dir(profile: TuningProfile) -> str:
    return f"{profile.install_prefix}/releases/image"


def venv_bin(profile: TuningProfile, name: str) -> str:
    """A console script of the ``current`` release (as ami.units runs them)."""
    return f"{profile.install_prefix}/current/venv/bin/{name}"


def profile_toml(profile: TuningProfile) -> str:
    """``profile`` as the file the image carries (``contracts.profile.profile_toml``)."""
    return profile_file(profile, "the lowlat tuning profile this image was built with")


def _bash(name: str, *lines: str) -> dict:
    """An ExecuteBash step whose lines form one script: shell state (``set -e``, variables)
    carries from line to line whichever way the runner treats separate commands."""
    return {"name": name, "action": "ExecuteBash", "inputs": {"commands": ["\n".join(lines)]}}


def _check_host_step(profile: TuningProfile) -> dict:
    python = shlex.quote(venv_bin(profile, "python"))
    service = shlex.quote(venv_bin(profile, "trading-service"))
    return _bash(
        "CheckHost",
        "set -euo pipefail",
        # check-host exits non-zero when any check fails; the script reads that and the report
        "status=0",
        f"{service} check-host --profile {PROFILE_PATH} --json > {CHECK_HOST_OUTPUT} || status=$?",
        f"{python} - {CHECK_HOST_OUTPUT} \"$status\" {','.join(REQUIRED_HOST_CHECKS)} <<'EOF'\n"
        f"{CHECK_HOST_SCRIPT}EOF",
    )


def _component(profile: TuningProfile) -> dict:
    system = host_os(profile)
    # profile values enter the commands shell-quoted (the profile's grammar allows no shell
    # syntax either); the wheel parameter stays single-quoted as Image Builder substitutes it
    q = shlex.quote
    release = q(release_dir(profile))
    prefix = q(profile.install_prefix)
    python = q(venv_bin(profile, "python"))
    user = q(profile.service_user)
    wheel = f"{DOWNLOAD_DIR}/$(basename '{{{{ {WHEEL_PARAMETER} }}}}')"
    write_agent_files = (
        "import os, sys; from pathlib import Path; "
        "from ami.cloudwatch import agent_files; from contracts.profile import load_profile; "
        "p = load_profile(sys.argv[1], os.cpu_count() or 1); "
        "[(Path(k).parent.mkdir(parents=True, exist_ok=True), Path(k).write_text(v)) "
        "for k, v in agent_files(p).items()]"
    )
    build = [
        _bash("RequireNoHzFull", NOHZ_FULL_SCRIPT.rstrip("\n")),
        _bash(
            "InstallPackages",
            "set -euo pipefail",
            'root="${LOWLAT_ROOT:-}"',
            *system.install_commands(),
        ),
        {
            "name": "DownloadWheel",
            "action": "S3Download",
            "inputs": [
                {
                    "source": f"{{{{ {WHEEL_PARAMETER} }}}}",
                    "destination": f"{DOWNLOAD_DIR}/lowlat.whl",
                }
            ],
        },
        _bash("CreateConfigFolder", "install -d -m 0755 /etc/lowlat"),
        _bash(
            "InstallRelease",
            "set -euo pipefail",
            # pip wants the wheel's own file name (name-version-tags.whl)
            f'wheel="{wheel}"',
            f'if [ "$wheel" != "{DOWNLOAD_DIR}/lowlat.whl" ]; then '
            f'mv -f {DOWNLOAD_DIR}/lowlat.whl "$wheel"; fi',
            f"mkdir -p {release}",
            f"{system.python} -m venv {release}/venv",
            f'{release}/venv/bin/pip install --no-cache-dir "$wheel"',
            f"ln -sfn {release} {prefix}/current.tmp && mv -Tf {prefix}/current.tmp "
            f"{prefix}/current",
        ),
        {
            "name": "WriteProfile",
            "action": "CreateFile",
            "inputs": [{"path": PROFILE_PATH, "content": profile_toml(profile), "overwrite": True}],
        },
        _bash("ApplyTuning", f"{python} -m ami apply --root / --profile {PROFILE_PATH}"),
        _bash(
            "CreateServiceUser",
            "set -euo pipefail",
            "systemd-sysusers",
            f"id -u {user}",
            f"install -d -o {user} -g {user} -m 0755 {cloudwatch.LOG_DIR}",
        ),
        _bash(
            "ConfigureCloudWatchAgent",
            "set -euo pipefail",
            f'{python} -c "{write_agent_files}" {PROFILE_PATH}',
            "systemctl daemon-reload",
            # translates and checks the config; no -s: the agent starts on the image's hosts
            f"{AGENT_CTL} -a fetch-config -m ec2 -c file:{cloudwatch.AGENT_CONFIG_PATH}",
        ),
        _bash("EnableServices", f"systemctl enable {' '.join(enabled_units(profile))}"),
        _bash("ApplyKernelArgs", f"bash {APPLY_KERNEL_ARGS}"),
        {"name": "RebootIntoKernelArgs", "action": "Reboot", "inputs": {"delaySeconds": 0}},
    ]
    return {
        "name": COMPONENT_NAME,
        "description": (
            f"lowlat: tune {system.title} arm64 for the trading service (kernel args, sysctls, "
            "irqbalance, CloudWatch agent) and verify it with trading-service check-host"
        ),
        "schemaVersion": 1.0,
        "parameters": [
            {
                WHEEL_PARAMETER: {
                    "type": "string",
                    "description": "S3 URI of the lowlat wheel (uploaded by the CDK stack)",
                }
            }
        ],
        "phases": [
            {"name": "build", "steps": build},
            {"name": "validate", "steps": [_check_host_step(profile)]},
            {"name": "test", "steps": [_check_host_step(profile)]},
        ],
    }


def enabled_units(profile: TuningProfile) -> tuple[str, ...]:
    """The units a tuned host starts at boot (the image and the hosts' user data enable them)."""
    return (
        "irqbalance",
        "amazon-cloudwatch-agent",
        host_os(profile).chrony_unit,
        TUNE_UNIT,
        FIREWALL_UNIT_NAME,  # nftables ruleset from ami/security.py
        CHECK_HOST_TIMER_UNIT,  # check-host as root every minute, for /host and the alarm
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts, file contents) as literal blocks, readable in the console."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def component_document(profile: TuningProfile) -> str:
    """The Image Builder component (YAML, schema 1.0) for a host tuned by ``profile``."""
    header = "# Rendered by ami/imagebuilder.py from the lowlat tuning profile.\n"
    body = yaml.dump(_component(profile), Dumper=_Dumper, sort_keys=False, width=4096)
    return header + body


def component_data(profile: TuningProfile) -> dict:
    """The component document parsed back (for the CDK app): exactly what the YAML says."""
    return yaml.safe_load(component_document(profile))
