"""The lab's disk image: Debian 12 arm64 from Debian's package registry, bootable under UEFI.

``build(cache)`` returns a qcow2 image under ``~/.cache/lowlat/lab/<key>/``; ``key`` hashes every
input (this recipe, the package list, the suite), so a changed recipe builds a new image and an
unchanged one is built once. The steps, all standard tools:

1. ``mmdebstrap`` (arm64, run through qemu-user-static and binfmt_misc) installs the packages into
   a directory: systemd, the cloud kernel, GRUB's arm64 EFI binaries, cloud-init, openssh-server,
   and what ``ami.hostos``'s Debian adapter installs (so the user data's ``apt-get install
   --no-upgrade`` finds them there, as on a cloud image). Two things are deferred while the
   packages are configured under emulation, because they dominate the time there and are not
   needed to build: byte-compiling Python (``py3compile`` is diverted; Python compiles a module on
   first import) and the initramfs (made once, at the end, with only the virtio and ext4
   modules the lab's machine needs).
2. The customize step writes what a cloud image has: fstab, networkd on DHCP, cloud-init reading
   only a NoCloud seed, the serial console, GRUB's defaults, ``/boot/grub/grub.cfg`` (``update-
   grub`` rewrites it on the host, as the user data does) and GRUB's modules under /boot/grub.
3. ``mkfs.ext4 -d`` turns the directory into the root filesystem (no loop device, no mount),
   ``mkfs.vfat`` and ``mcopy`` make the EFI system partition with GRUB at the removable-media
   path (``EFI/BOOT/BOOTAA64.EFI``, which the firmware finds with no boot entries), ``sfdisk``
   writes the GPT, ``qemu-img`` converts the whole to qcow2.

One thing cannot come from Debian: the CloudWatch agent (AWS's download site is out of reach).
The image carries a stand-in at the agent's paths (``STAND_INS``), which checks that its config
is JSON and otherwise idles; the summary lists it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from ami.hostos import ADAPTERS, AGENT_CTL

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ARCH = "arm64"
DEBIAN = ADAPTERS["debian12"]

# What a Debian cloud image has, and what the Debian adapter installs (ami.hostos).
PACKAGES = (
    "systemd-sysv",
    "systemd-resolved",
    "udev",
    "dbus",
    "kmod",
    "e2fsprogs",  # fsck and resize2fs (cloud-init grows the root filesystem)
    "linux-image-cloud-arm64",
    "initramfs-tools",
    "zstd",
    "grub-efi-arm64-bin",
    "grub2-common",
    "cloud-init",
    "openssh-server",
    "sudo",
    "iproute2",
    "procps",
    "xz-utils",
    "less",
    *DEBIAN.python_packages,
    *DEBIAN.packages,
)

ROOT_LABEL = "lowlat-root"
ESP_MIB = 64
ROOT_GIB = 8  # sparse: the releases, their venvs and the numba cache land here
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "ext4")
GRUB_MODULES = (
    "part_gpt", "fat", "ext2", "normal", "linux", "search", "search_fs_uuid", "configfile",
    "echo", "test", "gzio", "zstd", "efi_gop", "serial", "terminal", "all_video", "boot",
)  # fmt: skip
KERNEL_CONSOLE = "console=ttyAMA0"
STAGING = "/var/lib/lowlat-lab"  # GRUB's EFI binary waits here for the ESP

AGENT_UNIT = "/etc/systemd/system/amazon-cloudwatch-agent.service"
STAND_INS = {
    "amazon-cloudwatch-agent": (
        "AWS's download site is out of reach: a stand-in at the agent's paths "
        f"({AGENT_CTL}, amazon-cloudwatch-agent.service) checks its config is JSON and idles"
    ),
}

AGENT_STAND_IN = """#!/bin/sh
# lowlat lab STAND-IN for amazon-cloudwatch-agent-ctl: AWS's agent cannot be downloaded here.
# `-a fetch-config -c file:PATH` checks that PATH is JSON, as the agent would refuse it otherwise.
config=""
while [ $# -gt 0 ]; do
    case "$1" in -c) config="${2#file:}"; shift ;; esac
    shift
done
if [ -n "$config" ]; then
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$config" || exit 1
    echo "lowlat lab stand-in: $config is JSON (the real agent would translate it)"
fi
"""

AGENT_STAND_IN_UNIT = (
    "[Unit]\n"
    "Description=lowlat lab STAND-IN for the Amazon CloudWatch agent (not reachable here)\n"
    "\n[Service]\n"
    'ExecStart=/bin/sh -c \'echo "lowlat lab stand-in: the CloudWatch agent is not installed"; '
    "exec sleep infinity'\n"
    "\n[Install]\nWantedBy=multi-user.target\n"
)

NETWORKD = """[Match]
Name=en* eth*

[Network]
DHCP=yes
"""

CLOUD_CFG = (
    ("# lowlat lab: the seed is a NoCloud volume; the network is systemd-networkd's (DHCP); the\n")
    + f"""# login user is the one of Debian's images on EC2 (ami.hostos), keys from the seed, sudo
datasource_list: [NoCloud, None]
network: {{config: disabled}}
locale: false  # Debian's cloud images carry no locales package; C.UTF-8 is built in
system_info:
  default_user:
    name: {DEBIAN.login_user}
    lock_passwd: true
    gecos: lowlat lab
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
"""
)

GRUB_DEFAULT = f"""# lowlat lab: GRUB's defaults as Debian's cloud images set them
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="{KERNEL_CONSOLE}"
GRUB_TERMINAL=console
"""


class ImageError(Exception):
    """The image could not be built: one line saying which step and why."""


# Bump when a build step changes what it makes; the data below is hashed as it is.
RECIPE_VERSION = 1


def recipe() -> dict[str, object]:
    """Everything the image is made from; its hash is the cache key (a comment or a docstring
    changed here does not rebuild the image; a package, a file or a step does)."""
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "mirror": MIRROR,
        "arch": ARCH,
        "packages": sorted(PACKAGES),
        "initramfs_modules": INITRAMFS_MODULES,
        "grub_modules": GRUB_MODULES,
        "console": KERNEL_CONSOLE,
        "files": [AGENT_STAND_IN, AGENT_STAND_IN_UNIT, NETWORKD, CLOUD_CFG, GRUB_DEFAULT],
        "sizes": [ESP_MIB, ROOT_GIB],
    }


def cache_key() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "lowlat" / "lab"


def cached(cache: Path | None = None) -> Path | None:
    """The built image for today's recipe, if there is one."""
    image = (cache or cache_root()) / cache_key() / "disk.qcow2"
    return image if (image.parent / "image.json").is_file() else None


Step = Callable[[str], None]  # told the name of each step as it starts


def build(cache: Path | None = None, step: Step = lambda _: None, log: Path | None = None) -> Path:
    """The image for today's recipe: the cached one, else built now (about 15-25 minutes here)."""
    done = cached(cache)
    if done:
        return done
    out = (cache or cache_root()) / cache_key()
    out.parent.mkdir(parents=True, exist_ok=True)
    _need_space(out.parent, 6 << 30)
    work = Path(tempfile.mkdtemp(prefix="lowlat-lab-image-", dir=out.parent))
    try:
        logf = open(log or work / "build.log", "a")  # noqa: SIM115 -- closed in finally
        try:
            info = _build(work, step, logf)
        finally:
            logf.close()
        final = work / "out"
        final.mkdir()
        (work / "disk.qcow2").rename(final / "disk.qcow2")
        (final / "image.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        final.rename(out)  # atomic: an image is in the cache whole or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out / "disk.qcow2"


def _need_space(path: Path, size: int) -> None:
    free = shutil.disk_usage(path).free
    if free < size:
        raise ImageError(f"{path}: {free >> 20} MiB free, the image build needs {size >> 20} MiB")


def _run(cmd: list[str], logf, what: str, **kw) -> subprocess.CompletedProcess:
    logf.write(f"$ {' '.join(map(str, cmd))}\n")
    logf.flush()
    result = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, **kw)
    if result.returncode != 0:
        raise ImageError(f"{what} failed (exit {result.returncode}); see {logf.name}")
    return result


def _build(work: Path, step: Step, logf) -> dict[str, object]:
    root = work / "root"
    root_uuid = str(uuid.uuid4())
    step("packages, initramfs, GRUB (mmdebstrap, arm64 under qemu-user)")
    _mmdebstrap(root, root_uuid, logf)
    _compile_python(root, logf)
    kernel = _kernel_version(root)
    esp = work / "esp.img"
    _esp(root, esp, logf)
    step("filesystems")
    rootfs = work / "root.img"
    _run(
        ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-U", root_uuid, "-d", str(root),
         str(rootfs), f"{ROOT_GIB}G"],
        logf, "mkfs.ext4 -d",
    )  # fmt: skip
    step("disk")
    raw = work / "disk.raw"
    _disk(raw, esp, rootfs, logf)
    _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "disk.qcow2")], logf,
         "qemu-img convert")  # fmt: skip
    return {
        "key": cache_key(),
        "suite": SUITE,
        "arch": ARCH,
        "kernel": kernel,
        "root_uuid": root_uuid,
        "packages": _versions(root),
    }


def _mmdebstrap(root: Path, root_uuid: str, logf) -> None:
    modules = "\n".join(INITRAMFS_MODULES) + "\n"
    essential = [
        # deferred while packages are configured under emulation (see the module docstring)
        "chroot $1 dpkg-divert --local --rename --add /usr/sbin/update-initramfs",
        "ln -sf /bin/true $1/usr/sbin/update-initramfs",
        "chroot $1 dpkg-divert --local --rename --add /usr/bin/py3compile",
        "ln -sf /bin/true $1/usr/bin/py3compile",
        "mkdir -p $1/etc/initramfs-tools/conf.d $1/usr/share/initramfs-tools/modules.d",
        "printf 'MODULES=list\\n' > $1/etc/initramfs-tools/conf.d/lowlat-lab.conf",
        f"printf '{modules}' > $1/usr/share/initramfs-tools/modules.d/lowlat-lab",
    ]
    early = (
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\\n"
        "set prefix=($root)/boot/grub\\nconfigfile $prefix/grub.cfg\\n"
    )
    customize = [
        "rm -f $1/usr/sbin/update-initramfs $1/usr/bin/py3compile",
        "chroot $1 dpkg-divert --local --rename --remove /usr/sbin/update-initramfs",
        "chroot $1 dpkg-divert --local --rename --remove /usr/bin/py3compile",
        # the one initramfs, with the modules above (here: /proc, /sys and /dev are mounted)
        "chroot $1 update-initramfs -c -k all",
        # GRUB for the ESP, finding the root by UUID (the ESP is made outside, see _esp)
        f"mkdir -p $1{STAGING} && printf '{early}' > $1{STAGING}/early.cfg",
        f"chroot $1 grub-mkimage -O arm64-efi -o {STAGING}/BOOTAA64.EFI -p /boot/grub "
        f"-c {STAGING}/early.cfg {' '.join(GRUB_MODULES)}",
    ]
    cmd = [
        "mmdebstrap", f"--arch={ARCH}", "--variant=apt", "--mode=root",
        "--include=" + ",".join(PACKAGES),
        "--aptopt=Acquire::Languages \"none\"",
        "--aptopt=APT::Install-Recommends \"false\"",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        *(f"--essential-hook={h}" for h in essential),
        *(f"--customize-hook={h}" for h in customize),
        SUITE, str(root), MIRROR,
    ]  # fmt: skip
    _run(cmd, logf, "mmdebstrap")
    _customize(root, root_uuid)


def _compile_python(root: Path, logf) -> None:
    """The image's Python modules compiled here, natively, with paths as the host sees them."""
    guest = subprocess.run(
        ["chroot", str(root), "python3", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if guest != str(sys.version_info[:2]):  # bytecode is only valid for the same minor version
        logf.write(f"guest Python {guest}, this one {sys.version_info[:2]}: not precompiled\n")
        return
    dirs = [str(d) for d in (root / "usr/lib/python3/dist-packages", root / "usr/lib/python3.11")]
    # not checked: a module that does not compile here is compiled (or refused) where it is used
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(root), "-p",
                    "/", *dirs], stdout=logf, stderr=subprocess.STDOUT, check=False)  # fmt: skip


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def _customize(root: Path, root_uuid: str) -> None:
    """What a cloud image has that the packages do not set up (see the module docstring)."""
    _write(root, "/etc/fstab", f"UUID={root_uuid} / ext4 rw,discard,errors=remount-ro 0 1\n")
    _write(root, "/etc/hostname", "lowlat-lab\n")
    _write(root, "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 lowlat-lab\n")
    _write(root, "/etc/systemd/network/50-dhcp.network", NETWORKD)
    _write(root, "/etc/cloud/cloud.cfg.d/90-lowlat-lab.cfg", CLOUD_CFG)
    _write(root, "/etc/default/grub", GRUB_DEFAULT)
    _write(root, AGENT_CTL, AGENT_STAND_IN, 0o755)
    _write(root, AGENT_UNIT, AGENT_STAND_IN_UNIT)
    (root / "etc/machine-id").write_text("")  # a new one at first boot, as on a cloud image
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("systemd-networkd.service", "systemd-resolved.service"):
        link = wants / unit
        if not link.exists():
            link.symlink_to(f"/lib/systemd/system/{unit}")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("/run/systemd/resolve/stub-resolv.conf")
    # GRUB's modules where grub-install would put them; update-grub's config loads them
    shutil.copytree(root / "usr/lib/grub/arm64-efi", root / "boot/grub/arm64-efi",
                    dirs_exist_ok=True)  # fmt: skip
    kernel = _kernel_version(root)
    _write(
        root,
        "/boot/grub/grub.cfg",
        "# lowlat lab: the first boot's entry; update-grub on the host replaces this file\n"
        f"set timeout=0\nmenuentry 'Debian GNU/Linux' {{\n"
        f"  search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        f"  linux /boot/vmlinuz-{kernel} root=UUID={root_uuid} ro {KERNEL_CONSOLE}\n"
        f"  initrd /boot/initrd.img-{kernel}\n}}\n",
    )


def _kernel_version(root: Path) -> str:
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageError(f"no kernel under {root}/boot: linux-image-cloud-arm64 did not install")
    return kernels[-1]


def _esp(root: Path, esp: Path, logf) -> None:
    """The EFI system partition: GRUB (made in the customize step) at the removable-media path."""
    staging = root / STAGING.lstrip("/")
    _run(["mkfs.vfat", "-C", "-n", "EFI", str(esp), str(ESP_MIB * 1024)], logf, "mkfs.vfat")
    _run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], logf, "mmd")
    _run(["mcopy", "-i", str(esp), str(staging / "BOOTAA64.EFI"), "::/EFI/BOOT/BOOTAA64.EFI"],
         logf, "mcopy")  # fmt: skip
    shutil.rmtree(staging)


def _disk(raw: Path, esp: Path, rootfs: Path, logf) -> None:
    """GPT: the ESP at 1 MiB, the root after it; each partition copied in at its offset."""
    mib = 1 << 20
    esp_start = 1
    root_start = esp_start + ESP_MIB
    size = (root_start + (rootfs.stat().st_size // mib) + 1) * mib
    with open(raw, "wb") as f:
        f.truncate(size)
    table = (
        "label: gpt\n"
        f"start={esp_start * 2048}, size={ESP_MIB * 2048}, type=uefi, name=EFI\n"
        f"start={root_start * 2048}, type=linux, name={ROOT_LABEL}\n"
    )
    _run(["sfdisk", "--quiet", str(raw)], logf, "sfdisk", input=table.encode())
    for part, start in ((esp, esp_start), (rootfs, root_start)):
        _run(["dd", f"if={part}", f"of={raw}", "bs=1M", f"seek={start}", "conv=notrunc,sparse",
              "status=none"], logf, "dd")  # fmt: skip


def _versions(root: Path) -> dict[str, str]:
    """Versions of the packages the recipe names, as dpkg installed them."""
    result = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Version}\\n"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    versions = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return {name: versions.get(name, "?") for name in sorted(PACKAGES)}
