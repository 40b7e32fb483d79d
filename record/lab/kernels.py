"""Kernel images for the lab: Debian's packages fetched with apt (private config under the
cache, the system's apt untouched) or a user's own ``bzImage``/``vmlinuz``; and the facts
the lab needs from an image (release, config, BTF)."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from rmapscope import config
from rmapscope.errors import LabError

from .btf import Btf, BtfError, find_btf

__all__ = ["DEBIAN", "Kernel", "cache_dir", "resolve_kernel"]

#: ``debian:X`` -> (suite, package name pattern, companion packages). The newest package
#: matching the pattern is used; a companion is the same name with another prefix (sid splits
#: the image: ``linux-binary-*`` has the vmlinuz, ``linux-base-*`` the config).
DEBIAN = {
    "6.1": ("bookworm", r"linux-image-6\.1\.0-\d+-{arch}-unsigned", ()),
    "6.12": ("trixie", r"linux-image-6\.12\.\d+\+deb13-{arch}-unsigned", ()),
    "7.2": ("sid", r"linux-binary-7\.2\.\d+\+deb14-{arch}", ("linux-base-",)),
}
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_MIRROR = "http://deb.debian.org/debian"

#: Config options the sidecar reports (the probe syntax and the migration kinds depend on them).
CONFIG_FACTS = (
    "CONFIG_KPROBES",
    "CONFIG_KPROBE_EVENTS",
    "CONFIG_FPROBE",
    "CONFIG_FPROBE_EVENTS",
    "CONFIG_PROBE_EVENTS_BTF_ARGS",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_MIGRATION",
    "CONFIG_COMPACTION",
    "CONFIG_TRANSPARENT_HUGEPAGE",
    "CONFIG_NUMA",
    "CONFIG_DEVICE_PRIVATE",
    "CONFIG_MEMORY_FAILURE",
    "CONFIG_PTE_MARKER_UFFD_WP",
    "CONFIG_HAVE_ARCH_USERFAULTFD_WP",
    "CONFIG_ZONE_DEVICE",
    "CONFIG_ARCH_ENABLE_THP_MIGRATION",
    "CONFIG_PGTABLE_LEVELS",
    "CONFIG_HZ",
    "CONFIG_PREEMPT",
    "CONFIG_PREEMPT_VOLUNTARY",
    "CONFIG_PREEMPT_DYNAMIC",
)


def cache_dir() -> Path:
    """Where images, busybox and built initramfs files are cached (``$RMAPSCOPE_LAB_CACHE``,
    default ``~/.cache/rmapscope``)."""
    return Path(config.lab_cache() or Path.home() / ".cache" / "rmapscope")


@dataclass
class Kernel:
    """A bootable image and what the lab knows of it."""

    spec: str
    image: Path
    release: str | None = None
    version: tuple[int, int] | None = None
    config: dict[str, str] = field(default_factory=dict)
    modules: Path | None = None
    package: str | None = None
    _btf: Btf | None = None

    def btf(self) -> Btf:
        """The image's BTF (extracted from the compressed kernel, cached)."""
        if self._btf is None:
            raw = self.image.parent / f".{self.image.name}.btf-vmlinux"
            if not raw.exists():
                data = extract_vmlinux(self.image.read_bytes())
                tmp = raw.with_name(raw.name + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(raw)
            try:
                self._btf = Btf(find_btf(raw.read_bytes()))
            except BtfError as e:
                raise LabError(f"{self.image}: {e}") from None
        return self._btf

    def facts(self) -> dict[str, str | None]:
        """The config options of :data:`CONFIG_FACTS` (None: not set or no config known)."""
        return {k: self.config.get(k) for k in CONFIG_FACTS}


_PAYLOADS = (
    (b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
    (b"\x28\xb5\x2f\xfd", None),  # zstd, through the zstandard module
    (b"\x1f\x8b\x08", lambda b: zlib.decompressobj(31).decompress(b)),
    (b"BZh", lambda b: bz2.BZ2Decompressor().decompress(b)),
    (b"\x5d\x00\x00", lambda b: lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(b)),
)


def extract_vmlinux(image: bytes) -> bytes:
    """The uncompressed kernel inside a ``bzImage``/``vmlinuz`` (scripts/extract-vmlinux's
    method: try every compressed payload found by its magic; an ELF or an image with BTF
    wins). An uncompressed image is returned as is."""
    if image[:4] == b"\x7fELF":
        return image
    for magic, unpack in _PAYLOADS:
        at = 0
        while (at := image.find(magic, at)) >= 0:
            try:
                if unpack is None:
                    import zstandard

                    out = zstandard.ZstdDecompressor().decompressobj().decompress(image[at:])
                else:
                    out = unpack(image[at:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError, Exception):
                out = b""
            if out[:4] == b"\x7fELF" or (len(out) > 1 << 20 and b"\x9f\xeb\x01" in out):
                return out
            at += 1
    if b"\x9f\xeb\x01" in image:  # e.g. an uncompressed arm64 Image
        return image
    raise LabError("no kernel payload found in the image (not a bzImage/vmlinuz?)")


def _read_config(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"(CONFIG_\w+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
    return out


def _version_of(release: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _apt(root: Path, *args: str) -> subprocess.CompletedProcess:
    opts = [
        f"-oDir::Etc::SourceList={root / 'sources.list'}",
        "-oDir::Etc::SourceParts=/nonexistent",
        f"-oDir::State::Lists={root / 'lists'}",
        f"-oDir::Cache={root / 'cache'}",
        "-oAPT::Sandbox::User=root",
        "-qq",
    ]
    verb = next(a for a in args if not a.startswith("-"))
    tool = "apt-cache" if verb in ("search", "policy", "show") else "apt-get"
    if shutil.which(tool) is None:
        raise LabError(f"{tool} not found: debian:X kernels are fetched with apt")
    return subprocess.run([tool, *opts, *args], capture_output=True, text=True, cwd=root)


def _private_apt(suite: str, debarch: str) -> Path:
    """An apt root under the cache for ``suite``/``debarch`` (sources list, lists, cache),
    updated once: the system's apt configuration is never read or written."""
    apt = cache_dir() / "apt" / f"{suite}-{debarch}"
    if (apt / "updated").exists():
        return apt
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    opts = f"[arch={debarch} signed-by={_KEYRING}]"
    lines = [f"deb {opts} {_MIRROR} {suite} main"]
    if suite != "sid":
        lines += [
            f"deb {opts} {_MIRROR} {suite}-updates main",
            f"deb {opts} {_MIRROR}-security {suite}-security main",
        ]
    (apt / "sources.list").write_text("\n".join(lines) + "\n")
    r = _apt(apt, f"-oAPT::Architectures={debarch}", "update")
    if r.returncode:
        raise LabError(f"{suite}/{debarch}: apt-get update failed: {_last_line(r.stderr)}")
    (apt / "updated").write_text("")
    return apt


def _download(apt: Path, names: list[str], debarch: str, tree: Path) -> None:
    """``apt-get download`` the packages and unpack them all into ``tree``."""
    r = _apt(apt, f"-oAPT::Architectures={debarch}", "download", *(f"{n}:{debarch}" for n in names))
    if r.returncode:
        raise LabError(f"apt-get download {' '.join(names)} failed: {_last_line(r.stderr)}")
    shutil.rmtree(tree, ignore_errors=True)
    # apt-get download writes into the current directory (the apt dir)
    for deb in sorted(apt.glob("*.deb")):
        r = subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], capture_output=True, text=True)
        deb.unlink()
        if r.returncode:
            raise LabError(f"{deb}: dpkg-deb -x failed: {_last_line(r.stderr)}")


def fetch_busybox(arch: str) -> Path:
    """Debian's busybox-static for ``arch`` (trixie), fetched with the private apt, cached."""
    debarch = {"x86_64": "amd64", "aarch64": "arm64"}[arch]
    out = cache_dir() / "lab" / f"busybox-{arch}"
    if not out.exists():
        apt = _private_apt("trixie", debarch)
        tree = apt / "busybox"
        _download(apt, ["busybox-static"], debarch, tree)
        found = [
            p for p in (tree / "bin" / "busybox", tree / "usr" / "bin" / "busybox") if p.exists()
        ]
        if not found:
            raise LabError("busybox-static has no bin/busybox")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], out)
        out.chmod(0o755)
    return out


def _fetch_debian(version: str, arch: str) -> Path:
    suite, pattern, companions = DEBIAN[version]
    debarch = {"x86_64": "amd64", "aarch64": "arm64"}[arch]
    where = cache_dir() / "kernels" / f"debian-{version}-{debarch}"
    done = where / "package.txt"
    if done.exists():
        return where
    apt = _private_apt(suite, debarch)
    r = _apt(
        apt,
        f"-oAPT::Architectures={debarch}",
        "search",
        "--names-only",
        "^" + pattern.split("\\")[0],
    )
    rx = re.compile(pattern.format(arch=debarch))
    names = sorted(
        {line.split(" ")[0] for line in r.stdout.splitlines() if rx.fullmatch(line.split(" ")[0])},
        key=lambda n: [int(x) for x in re.findall(r"\d+", n)],
    )
    if not names:
        raise LabError(f"debian:{version}: no package matching {rx.pattern} in {suite}")
    name = names[-1]
    prefix = name[: name.index("-", len("linux-")) + 1]
    where.mkdir(parents=True, exist_ok=True)
    _download(apt, [name, *(c + name[len(prefix) :] for c in companions)], debarch, where / "x")
    done.write_text(name + "\n")
    return where


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no message)"


def arch_of(spec: str) -> str:
    """The arch a kernel spec boots on: ``debian:X/arm64`` and arm64 ``Image`` files (plain
    or gzip'd, as Debian ships them) are ``aarch64``; everything else ``x86_64``."""
    if spec.startswith("debian:"):
        return "aarch64" if spec.endswith("/arm64") else "x86_64"
    try:
        with open(spec, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return "x86_64"
    if head[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError, zlib.error):
            head = zlib.decompressobj(31).decompress(head, 128)
    return "aarch64" if head[0x38:0x3C] == b"ARM\x64" else "x86_64"


def resolve_kernel(spec: str, arch: str = "x86_64") -> Kernel:
    """``debian:6.1`` / ``debian:6.12`` / ``debian:7.2`` (fetched and cached) or a path to a
    ``bzImage``/``vmlinuz`` (its config is read from a ``config-*`` or ``.config`` next to
    it when there is one)."""
    if spec.startswith("debian:"):
        version = spec.split(":", 1)[1].removesuffix("/arm64")
        if version not in DEBIAN:
            raise LabError(
                f"unknown kernel {spec!r}; known: " + ", ".join(f"debian:{v}" for v in DEBIAN)
            )
        where = _fetch_debian(version, arch)
        x = where / "x"
        images = sorted((x / "boot").glob("vmlinuz-*"))
        if images:
            image = images[-1]
            release = image.name[len("vmlinuz-") :]
            cfg = image.with_name(f"config-{release}")
        else:  # sid: usr/lib/modules/<release>/{vmlinuz,config}
            found = sorted((x / "usr" / "lib" / "modules").glob("*/vmlinuz"))
            if not found:
                raise LabError(f"{where}: the package has no vmlinuz")
            image, release = found[-1], found[-1].parent.name
            cfg = image.with_name("config")
        mods = next(
            (
                m
                for m in (x / "lib" / "modules" / release, x / "usr" / "lib" / "modules" / release)
                if m.is_dir()
            ),
            None,
        )
        return Kernel(
            spec,
            image,
            release,
            _version_of(release),
            _read_config(cfg.read_text()) if cfg.exists() else {},
            mods,
            (where / "package.txt").read_text().strip(),
        )
    path = Path(spec)
    try:
        head = path.read_bytes()[:4096]
    except OSError as e:
        raise LabError(f"{spec}: kernel image unreadable: {e.strerror}") from None
    if len(head) < 512:
        raise LabError(f"{spec}: kernel image unreadable: too short for a kernel")
    cfg_text = ""
    for cand in (
        path.parent / ".config",
        path.parent / "config",
        *sorted(path.parent.glob("config-*")),
    ):
        if cand.is_file():
            cfg_text = cand.read_text(errors="replace")
            break
    own = _release_of(path)
    return Kernel(spec, path, own, _version_of(own), _read_config(cfg_text))


def _release_of(image: Path) -> str | None:
    """The release string of a bzImage (its header's version pointer) when it has one."""
    data = image.read_bytes()
    if data[0x202:0x206] == b"HdrS":
        off = int.from_bytes(data[0x20E:0x210], "little") + 0x200
        text = data[off : off + 128].split(b"\0")[0].decode(errors="replace")
        return text.split(" ")[0] or None
    m = re.search(
        rb"Linux version (\S+)",
        gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data[: 1 << 24],
    )
    return m.group(1).decode() if m else None
