"""Writes an OCI image layout tar holding one linux/ia64 image: a single
layer with /foreign, an ELF header for IA-64 (a machine no QEMU binfmt
handler serves). Usage: foreign_image.py OUT.tar NAME"""
import hashlib
import io
import json
import sys
import tarfile


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1735689600
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


elf = bytearray(64)
elf[:8] = bytes([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0])
elf[16], elf[18], elf[20], elf[52], elf[54] = 2, 50, 1, 64, 56  # ET_EXEC, EM_IA_64
layer = tar_bytes([("foreign", bytes(elf), 0o755)])
config = json.dumps({
    "architecture": "ia64", "os": "linux",
    "config": {"Cmd": ["/foreign"]},
    "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
}).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}],
}).encode()
index = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": sys.argv[2], "org.opencontainers.image.ref.name": sys.argv[2]},
    }],
}).encode()
files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644), ("index.json", index, 0o644)]
files += [("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b, 0o644) for b in (layer, config, manifest)]
with open(sys.argv[1], "wb") as f:
    f.write(tar_bytes(files))
