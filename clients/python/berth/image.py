"""Images as the Go side reads them (unpack.Resolve, images, distribution):
references, the manifest of a platform, the config, and the chain ID of
the layers, which names the committed snapshot an unpack leaves.

Everything here works on descriptors as dicts in the OCI JSON form
({"mediaType", "digest", "size", "platform"}) and reads blobs through a
callable, so that it is the same for blobs from the daemon's content
service (Client.resolve_image) and for the unit tests' own.
"""

import hashlib
import json
import re

from .ttrpc import FailedPrecondition, InvalidArgument, NotFound, NotImplemented_

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

MANIFESTS = (MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST)
INDEXES = (MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST)
CONFIGS = (MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG)

MAX_MANIFEST_SIZE = 4 << 20  # a manifest, index or config is read into memory
MAX_INDEX_DEPTH = 4  # nested indexes followed to a manifest
DEFAULT_PLATFORM = "linux/amd64"  # what the daemon pulls and unpacks by default

_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest's, hex length
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}
_DEFAULT_VARIANT = {"amd64": "v1", "arm64": "v8"}  # the variant that is left out


def normalize_reference(ref):
    """The normalised form of an image reference, as docker, containerd
    and berth's pulls and imports name images: "busybox" is
    "docker.io/library/busybox:latest". None when ref is not a reference
    this can normalise (the caller then uses ref as it is)."""
    name, _, dgst = ref.partition("@")
    slash = name.find("/")
    first = name[:slash] if slash >= 0 else ""
    if slash >= 0 and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, name[slash + 1:]
    else:
        domain, path = "docker.io", name
    tag = ""
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if not re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", path):
        return None
    if tag and not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        return None
    if not tag and not dgst:
        tag = "latest"
    out = domain + "/" + path
    if tag:
        out += ":" + tag
    if dgst:
        out += "@" + dgst
    return out


def parse_platform(platform):
    """(os, architecture, variant) of "os/arch[/variant]", normalised as
    containerd's platforms package does (x86_64 is amd64, amd64's v1 and
    arm64's v8 are no variant)."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument("platform %r: want os/arch[/variant]" % platform)
    os_, arch = parts[0].lower(), parts[1].lower()
    arch = _ARCH_ALIASES.get(arch, arch)
    variant = parts[2].lower() if len(parts) == 3 else ""
    if variant == _DEFAULT_VARIANT.get(arch):
        variant = ""
    return os_, arch, variant


def _platform_of(desc):
    p = desc.get("platform")
    if not p:
        return None
    parts = [p.get("os", ""), p.get("architecture", "")]
    if p.get("variant"):
        parts.append(p["variant"])
    try:
        return parse_platform("/".join(parts))
    except InvalidArgument:
        return None


def chain_id(diff_ids):
    """The chain ID of layers with these diff IDs, bottom first (the OCI
    image spec's identity.ChainID): the first diff ID, then
    sha256(previous + " " + next) for each next one. "" for no layers."""
    chain = ""
    for d in diff_ids:
        if not chain:
            chain = d
        else:
            chain = "sha256:" + hashlib.sha256((chain + " " + d).encode()).hexdigest()
    return chain


def check_digest(dgst):
    """Raises InvalidArgument unless dgst is algorithm:hex as go-digest
    accepts it (sha256, sha384, sha512)."""
    alg, _, hexpart = dgst.partition(":")
    n = _ALGORITHMS.get(alg)
    if n is None or len(hexpart) != n or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise InvalidArgument("digest %r: want sha256:<64 hex>, sha384 or sha512" % dgst)


def verify(desc, data):
    """Raises FailedPrecondition unless data has desc's size and digest."""
    alg, _, hexpart = desc["digest"].partition(":")
    if len(data) != desc["size"] or hashlib.new(alg, data).hexdigest() != hexpart:
        raise FailedPrecondition("%s: the stored bytes (%d) do not match the descriptor (%d bytes)"
                                 % (desc["digest"], len(data), desc["size"]))


def descriptor(proto):
    """An images.v1 Descriptor as a dict in the OCI JSON form."""
    d = {"mediaType": proto.media_type, "digest": proto.digest, "size": proto.size}
    if proto.HasField("platform"):
        d["platform"] = {"os": proto.platform.os, "architecture": proto.platform.architecture}
        if proto.platform.variant:
            d["platform"]["variant"] = proto.platform.variant
    return d


class Image:
    """One platform's manifest of an image and its decoded config.

    name: the image's name in the daemon; target: the descriptor the
    image names (an index or a manifest); manifest: the descriptor of the
    platform's manifest; config_descriptor and layers: the manifest's;
    config: the decoded config (its "config" holds Entrypoint, Cmd, Env,
    WorkingDir, User; "rootfs" the diff IDs)."""

    def __init__(self, name, target, manifest, config_descriptor, layers, config):
        self.name = name
        self.target = target
        self.manifest = manifest
        self.config_descriptor = config_descriptor
        self.layers = layers
        self.config = config

    @property
    def diff_ids(self):
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])

    @property
    def chain_id(self):
        """The name of the committed snapshot that an unpack of the image
        leaves ("" for an image without layers)."""
        return chain_id(self.diff_ids)

    @property
    def runtime_config(self):
        """The config's runtime part (Entrypoint, Cmd, Env, WorkingDir,
        User), {} when it has none."""
        return self.config.get("config") or {}

    def __repr__(self):
        return "Image(%r, manifest=%s, chain_id=%s)" % (self.name, self.manifest["digest"], self.chain_id)


def read_json(read, desc, what):
    """The JSON object of blob desc, read with read(desc) -> bytes after
    checking its size bound, then checked against its digest."""
    check_digest(desc.get("digest", ""))
    if desc.get("size", 0) > MAX_MANIFEST_SIZE:
        raise InvalidArgument("%s %s: %d bytes, more than %d" % (what, desc["digest"], desc["size"], MAX_MANIFEST_SIZE))
    data = read(desc)
    verify(desc, data)
    try:
        v = json.loads(data)
    except ValueError as e:
        raise InvalidArgument("%s %s: %s" % (what, desc["digest"], e)) from None
    if not isinstance(v, dict):
        raise InvalidArgument("%s %s: not a JSON object" % (what, desc["digest"]))
    return v


def manifest_for(read, target, platform=DEFAULT_PLATFORM, depth=0):
    """The descriptor of target when it is a manifest, else of the first
    manifest of the index target for platform (nested indexes followed),
    as unpack.Resolve picks it. NotFound when no manifest matches."""
    mt = target.get("mediaType", "")
    if mt in MANIFESTS:
        return target
    if mt not in INDEXES:
        raise NotImplemented_("%s: media type %r is neither a manifest nor an index" % (target.get("digest"), mt))
    if depth >= MAX_INDEX_DEPTH:
        raise InvalidArgument("index %s: nested more than %d deep" % (target["digest"], MAX_INDEX_DEPTH))
    want = parse_platform(platform)
    children = read_json(read, target, "index").get("manifests") or []
    for d in children:
        if d.get("mediaType") in MANIFESTS and _platform_of(d) == want:
            return d
    for d in children:
        if d.get("mediaType") in INDEXES:
            try:
                return manifest_for(read, d, platform, depth + 1)
            except NotFound:
                pass
    raise NotFound("index %s: no manifest for the platform %s" % (target["digest"], platform))


def resolve(read, name, target, platform=DEFAULT_PLATFORM):
    """The Image of name for platform: its manifest (through the index
    when target is one), its config, checked to have one diff ID per
    layer. read(desc) returns a blob's bytes."""
    desc = manifest_for(read, target, platform)
    mf = read_json(read, desc, "manifest")
    cfg_desc = mf.get("config") or {}
    if cfg_desc.get("mediaType") not in CONFIGS:
        raise NotImplemented_("manifest %s: config media type %r is not an image config"
                              % (desc["digest"], cfg_desc.get("mediaType")))
    config = read_json(read, cfg_desc, "config of manifest %s" % desc["digest"])
    layers = mf.get("layers") or []
    img = Image(name, target, desc, cfg_desc, layers, config)
    diff_ids = img.diff_ids
    if len(diff_ids) != len(layers):
        raise InvalidArgument("config %s: %d diff IDs for %d layers" % (cfg_desc["digest"], len(diff_ids), len(layers)))
    for i, d in enumerate(diff_ids):
        try:
            check_digest(d)
        except InvalidArgument as e:
            raise InvalidArgument("config %s: diff ID %d: %s" % (cfg_desc["digest"], i, e)) from None
    return img
