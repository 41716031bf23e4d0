#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (Fuzz/corpus/TARGET/) from real inputs: the tar
headers, configs and manifests of the test images fixtures/build.sh makes, this machine's
/proc/self/mountinfo, containers-common's seccomp profile when installed, and typical
references and WWW-Authenticate headers. The seeds are committed; run this again only to
refresh them (fixtures/build.sh first)."""
import glob
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "out")
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def header_runs(tar_bytes):
    """Each entry's header blocks (PAX x/g, GNU L/K with their data, then its own header)."""
    pos, run = 0, b""
    while pos + 512 <= len(tar_bytes):
        block = tar_bytes[pos:pos + 512]
        if block == b"\0" * 512:
            break
        size = tarfile.nti(block[124:136])
        data_len = (size + 511) // 512 * 512
        kind = block[156:157]
        if kind in (b"x", b"X", b"g", b"L", b"K"):
            run += tar_bytes[pos:pos + 512 + data_len]
        else:
            yield run + block
            run = b""
        pos += 512 + data_len


def tar_seeds():
    n = 0
    for layer in ("layer1.tar", "layer3.tar"):
        with open(os.path.join(FIXTURES, layer), "rb") as f:
            runs = list(header_runs(f.read()))
        # The ones with extended headers first: long names, UTF-8 names, xattrs.
        runs.sort(key=len, reverse=True)
        for r in runs[:4]:
            write("tar-header", "%s-%d" % (layer[:-4], n), r)
            n += 1
    # Forms the fixtures lack: a global PAX header, GNU long link names, libarchive's xattrs,
    # a base-256 size.
    g = tarfile.TarInfo("pax_global_header")
    g.type = tarfile.XGLTYPE
    g.pax_headers = {"comment": "global", "SCHILY.xattr.user.g": "1"}
    f = tarfile.TarInfo("dir/file")
    f.pax_headers = {"LIBARCHIVE.xattr.user.a%20b": "dmFsdWU=", "path": "p\u00e4th/\u00fcml"}
    write("tar-header", "global-pax", g.tobuf(tarfile.PAX_FORMAT) + f.tobuf(tarfile.PAX_FORMAT))
    link = tarfile.TarInfo("l" * 150)
    link.type = tarfile.SYMTYPE
    link.linkname = "t" * 200
    write("tar-header", "gnu-long", link.tobuf(tarfile.GNU_FORMAT))
    big = tarfile.TarInfo("big")
    big.size = 1 << 40
    write("tar-header", "base256-size", big.tobuf(tarfile.GNU_FORMAT))


def json_seeds():
    oci = os.path.join(FIXTURES, "oci-gzip")
    write("image-json", "index", open(os.path.join(oci, "index.json"), "rb").read())
    index = json.load(open(os.path.join(oci, "index.json")))
    mdigest = index["manifests"][0]["digest"].split(":")[1]
    mbytes = open(os.path.join(oci, "blobs", "sha256", mdigest), "rb").read()
    write("image-json", "manifest", mbytes)
    cdigest = json.loads(mbytes)["config"]["digest"].split(":")[1]
    cbytes = open(os.path.join(oci, "blobs", "sha256", cdigest), "rb").read()
    write("image-json", "config", cbytes)
    multi = os.path.join(FIXTURES, "oci-multiplatform")
    top = json.load(open(os.path.join(multi, "index.json")))
    nested = top["manifests"][0]["digest"].split(":")[1]
    write("image-json", "index-platforms", open(os.path.join(multi, "blobs", "sha256", nested), "rb").read())
    # docker-archive: manifest.json, a NUL, then the config it names (the target splits there).
    for name in ("docker-legacy.tar", "docker-skopeo.tar"):
        with tarfile.open(os.path.join(FIXTURES, name)) as t:
            manifest = t.extractfile("manifest.json").read()
            config = t.extractfile(json.loads(manifest)[0]["Config"]).read()
        write("image-json", name[:-4], manifest + b"\0" + config)
    write("image-json", "escaped-keys", '{"rootfs":{"type":"layers","diff\\u005fids":[]},"os":"linux","\\ud83d\\ude00":1}')


def reference_seeds():
    digest = "sha256:" + hashlib.sha256(b"strata").hexdigest()
    refs = [
        "busybox", "busybox:1.36", "library/busybox:latest", "docker.io/library/busybox:latest",
        "localhost:5000/strata/busybox:gzip", "localhost/x:1", "127.0.0.1:5000/a/b__c/d-e.f:v1.0_rc",
        "ghcr.io/owner/image@" + digest, "registry-1.docker.io/library/alpine:3.19@" + digest,
        "example.com/strata/busybox:gzip", "https://index.docker.io/v1/", "linux/arm64/v8",
    ]
    for i, r in enumerate(refs):
        write("reference", "ref-%d" % i, r)


def mountinfo_seeds():
    # This machine's mounts, the system ones only (/, /proc, /sys, /dev, /run, /tmp).
    system = ("/proc", "/sys", "/dev", "/run", "/tmp")
    lines = [l for l in open("/proc/self/mountinfo", "rb").read().splitlines(keepends=True)
             if len(l.split(b" ")) > 4 and (l.split(b" ")[4] == b"/" or l.split(b" ")[4].decode().startswith(system))]
    write("mountinfo", "proc-self", b"".join(lines))
    write("mountinfo", "cgroup-v1",
          "25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
          "26 25 0:23 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory\n"
          "27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct\n"
          "28 25 0:25 / /sys/fs/cgroup/pids rw,nosuid master:1 propagate_from:2 - cgroup cgroup rw,pids\n"
          "40 30 8:1 / /mnt/with\\040space\\011tab rw - ext4 /dev/sda1 rw\n"
          "41 30 0:40 / /- rw - overlay  rw,lowerdir=/a:/b,upperdir=/c,workdir=/d\n")


def seccomp_seeds():
    containers = "/usr/share/containers/seccomp.json"
    if os.path.exists(containers):
        write("seccomp-profile", "containers-common", open(containers, "rb").read())
    write("seccomp-profile", "small", json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"name": "personality", "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        ]}))


def auth_seeds():
    headers = [
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:owner/image:pull"',
        'Basic realm="Registry Realm"',
        'Bearer realm="http://127.0.0.1:5001/token?x=1", service=local, error="invalid_token", error_description="a \\"quoted\\" word"',
        'bearer Realm=https://quay.io/v2/auth,Service=quay.io',
    ]
    for i, h in enumerate(headers):
        write("www-authenticate", "header-%d" % i, h)


if __name__ == "__main__":
    if not os.path.exists(os.path.join(FIXTURES, "layer1.tar")):
        sys.exit("no fixtures: run fixtures/build.sh first")
    shutil.rmtree(CORPUS, ignore_errors=True)
    tar_seeds(); json_seeds(); reference_seeds(); mountinfo_seeds(); seccomp_seeds(); auth_seeds()
    for d in sorted(os.listdir(CORPUS)):
        print(d, len(os.listdir(os.path.join(CORPUS, d))))
