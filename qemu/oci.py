#!/usr/bin/env python3
"""Writes and checks an OCI image layout holding a Torito kernel, for urunc (Kubernetes).

usage: qemu/oci.py build --kernel build/NAME.elf --name NAME --out build/oci/NAME
                         [--type linux|hermit] [--hypervisor qemu|firecracker|cloud-hypervisor]
                         [--tag latest]
       qemu/oci.py check DIR

`build` writes an image layout (image-spec v1.1 "image-layout.md") as `FROM scratch`
would: one layer holding the kernel at /unikernel/NAME and /urunc.json, a config whose
Cmd is the kernel's path and whose labels are urunc's annotations, and a manifest
carrying the same annotations. urunc reads its settings from the annotations when
containerd passes them, else from /urunc.json, whose values are base64 (urunc's
docs/package/index.md; pkg/unikontainers/config.go decodes them).

`check` reads a layout back and verifies it from the top: index.json, then every
descriptor's blob (sha256 and size), the manifest's media types, the config's diff_id
against the uncompressed layer, the layer's files (an ELF64 kernel at the binary path,
/urunc.json decoding to the annotations), and the annotations themselves. It exits 1
with one line per problem.

Why a script of our own and not umoci or skopeo: Python's standard library is all it
needs (tar, gzip, hashlib, json), it runs offline with nothing to install, and the
output is reproducible: the same kernel gives the same digests (fixed timestamps and
owners, no `created` date). Pushing the layout to a registry is skopeo's job
(`skopeo copy oci:build/oci/echo:latest docker://REGISTRY/echo:latest`, docs/deploy.md).
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

PREFIX = "com.urunc.unikernel."
TYPE = PREFIX + "unikernelType"
HYPERVISOR = PREFIX + "hypervisor"
BINARY = PREFIX + "binary"
CMDLINE = PREFIX + "cmdline"
VERSION = PREFIX + "unikernelVersion"
REQUIRED = (TYPE, HYPERVISOR, BINARY)

TYPES = ("linux", "hermit")
HYPERVISORS = ("qemu", "firecracker", "cloud-hypervisor")


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value):
    """JSON with sorted keys and no spaces: the same object gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(kernel, binary_path, urunc_json):
    """An uncompressed tar of the layer, every header fixed (owner root, time 0)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data, mode, kind=tarfile.REGTYPE):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)

        directory = os.path.dirname(binary_path).strip("/")
        if directory:
            add(directory + "/", b"", 0o755, tarfile.DIRTYPE)
        add(binary_path.lstrip("/"), kernel, 0o755)
        add("urunc.json", urunc_json, 0o644)
    return buffer.getvalue()


def build(args):
    with open(args.kernel, "rb") as file:
        kernel = file.read()
    if kernel[:5] != b"\x7fELF\x02":
        sys.exit(f"oci: {args.kernel} is not an ELF64 file (run `make images`)")
    binary_path = f"/unikernel/{args.name}"
    annotations = {
        TYPE: args.type,
        HYPERVISOR: args.hypervisor,
        BINARY: binary_path,
        # The container's command: urunc's `linux` type writes its first word as
        # `init=` (Torito ignores it) and the rest after `--`.
        CMDLINE: binary_path,
        VERSION: "",
    }
    urunc_json = canonical(
        {key: base64.b64encode(value.encode()).decode() for key, value in annotations.items()}
    )
    tar = layer_tar(kernel, binary_path, urunc_json)
    # mtime=0 and no file name in the gzip header: reproducible bytes.
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as stream:
        stream.write(tar)
    layer = compressed.getvalue()
    config = canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": [binary_path], "Labels": annotations},
            "rootfs": {"type": "layers", "diff_ids": [digest(tar)]},
            "history": [{"created_by": "make oci (qemu/oci.py): FROM scratch, the kernel"}],
        }
    )
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest(layer), "size": len(layer)}],
            "annotations": annotations,
        }
    )
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {"org.opencontainers.image.ref.name": args.tag},
                }
            ],
        }
    )
    blobs = os.path.join(args.out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    # A rebuild replaces the layout: stale blobs from an older kernel go.
    for name in os.listdir(blobs):
        os.remove(os.path.join(blobs, name))
    for blob in (layer, config, manifest):
        with open(os.path.join(blobs, digest(blob).split(":", 1)[1]), "wb") as file:
            file.write(blob)
    with open(os.path.join(args.out, "index.json"), "wb") as file:
        file.write(index)
    with open(os.path.join(args.out, "oci-layout"), "wb") as file:
        file.write(canonical({"imageLayoutVersion": "1.0.0"}))
    print(
        f"oci: {args.out}: {args.name} ({args.type} on {args.hypervisor}), "
        f"manifest {digest(manifest)}, tag {args.tag}"
    )


def check(directory):
    """Every problem found in the layout at `directory`, as lines."""
    problems = []

    def load_json(data, what):
        try:
            return json.loads(data)
        except ValueError as error:
            problems.append(f"{what}: not JSON: {error}")
            return None

    def blob(descriptor, media_type, what):
        """The blob a descriptor names, checked against its digest and size."""
        if not isinstance(descriptor, dict):
            problems.append(f"{what}: not a descriptor")
            return None
        if descriptor.get("mediaType") != media_type:
            problems.append(f"{what}: media type {descriptor.get('mediaType')!r}, expected {media_type}")
        name = str(descriptor.get("digest", ""))
        algorithm, _, hexdigest = name.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            problems.append(f"{what}: digest {name!r} is not sha256:<64 hex digits>")
            return None
        path = os.path.join(directory, "blobs", "sha256", hexdigest)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            problems.append(f"{what}: blob {name} missing: {error}")
            return None
        if digest(data) != name:
            problems.append(f"{what}: blob {name} holds bytes whose digest is {digest(data)}")
        if descriptor.get("size") != len(data):
            problems.append(f"{what}: size {descriptor.get('size')} but the blob has {len(data)} bytes")
        return data

    def annotations_ok(annotations, what):
        if not isinstance(annotations, dict):
            problems.append(f"{what}: no annotations")
            return {}
        for key in REQUIRED:
            if not annotations.get(key):
                problems.append(f"{what}: annotation {key} missing or empty")
        if annotations.get(TYPE) not in TYPES + (None,):
            problems.append(f"{what}: {TYPE} is {annotations.get(TYPE)!r}, Torito runs as {TYPES}")
        return annotations

    try:
        with open(os.path.join(directory, "oci-layout"), "rb") as file:
            layout = load_json(file.read(), "oci-layout")
        if layout is not None and layout.get("imageLayoutVersion") != "1.0.0":
            problems.append("oci-layout: imageLayoutVersion is not 1.0.0")
        with open(os.path.join(directory, "index.json"), "rb") as file:
            index = load_json(file.read(), "index.json")
    except OSError as error:
        return [f"{directory}: not an image layout: {error}"]
    if not isinstance(index, dict) or index.get("schemaVersion") != 2:
        return problems + ["index.json: schemaVersion is not 2"]
    manifests = index.get("manifests") or []
    if not manifests:
        problems.append("index.json: no manifests")
    for number, entry in enumerate(manifests):
        what = f"index.json manifest {number}"
        if not (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name"):
            problems.append(f"{what}: no org.opencontainers.image.ref.name (the tag)")
        data = blob(entry, MANIFEST, what)
        manifest = data and load_json(data, what)
        if not isinstance(manifest, dict):
            continue
        if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MANIFEST:
            problems.append(f"{what}: not an OCI image manifest")
        annotations = annotations_ok(manifest.get("annotations"), f"{what} annotations")
        config_data = blob(manifest.get("config"), CONFIG, f"{what} config")
        config = config_data and load_json(config_data, f"{what} config")
        layers = manifest.get("layers") or []
        if len(layers) != 1:
            problems.append(f"{what}: {len(layers)} layers, expected 1")
            continue
        layer = blob(layers[0], LAYER, f"{what} layer")
        if layer is None or not isinstance(config, dict):
            continue
        try:
            tar_bytes = gzip.decompress(layer)
        except (OSError, EOFError) as error:
            problems.append(f"{what} layer: not gzip: {error}")
            continue
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if diff_ids != [digest(tar_bytes)]:
            problems.append(f"{what} config: diff_ids {diff_ids} do not name the layer's tar {digest(tar_bytes)}")
        labels = (config.get("config") or {}).get("Labels")
        if labels != annotations:
            problems.append(f"{what} config: labels differ from the manifest's annotations")
        cmd = (config.get("config") or {}).get("Cmd")
        if not cmd:
            problems.append(f"{what} config: no Cmd (urunc's linux type needs a first word for init=)")
        try:
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
                files = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}
        except tarfile.TarError as error:
            problems.append(f"{what} layer: not a tar: {error}")
            continue
        binary = str(annotations.get(BINARY, "")).lstrip("/")
        kernel = files.get(binary)
        if kernel is None:
            problems.append(f"{what} layer: no kernel at /{binary} (the {BINARY} annotation)")
        elif kernel[:5] != b"\x7fELF\x02":
            problems.append(f"{what} layer: /{binary} is not an ELF64 kernel")
        urunc = files.get("urunc.json")
        if urunc is None:
            problems.append(f"{what} layer: no /urunc.json")
            continue
        values = load_json(urunc, f"{what} /urunc.json")
        if not isinstance(values, dict):
            continue
        decoded = {}
        for key, value in values.items():
            try:
                decoded[key] = base64.b64decode(value, validate=True).decode()
            except (ValueError, TypeError):
                problems.append(f"{what} /urunc.json: {key} is not base64 (urunc decodes every value)")
        if decoded and decoded != annotations:
            problems.append(f"{what} /urunc.json: decodes to {decoded}, the manifest says {annotations}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build")
    make.add_argument("--kernel", required=True)
    make.add_argument("--name", required=True)
    make.add_argument("--out", required=True)
    make.add_argument("--type", choices=TYPES, default="linux")
    make.add_argument("--hypervisor", choices=HYPERVISORS, default="qemu")
    make.add_argument("--tag", default="latest")
    verify = commands.add_parser("check")
    verify.add_argument("directory")
    args = parser.parse_args()
    if args.command == "build":
        build(args)
        problems = check(args.out)
    else:
        problems = check(args.directory)
    for problem in problems:
        print(f"oci: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    if args.command == "check":
        print(f"oci: {args.directory}: a valid image layout")


if __name__ == "__main__":
    main()
