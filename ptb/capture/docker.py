"""Docker: the image a process runs in, named by the user or found in the environment."""
from __future__ import annotations

import functools
import os
from typing import Any, Dict, Optional

from ..errors import MissingDependencyError, ProvenanceError
from .codeenv import CodeEnv, read_text

__all__ = ["DockerEnv", "dockerimageID", "detect_docker", "in_container"]


class DockerEnv(CodeEnv):
    """A Docker image, named by the user (0.1.x signature) or by ``detect_docker``."""

    kind = "Docker"

    def __init__(self, imagename: str, tag: Optional[str], imageID: Optional[str],
                 include_packages: bool = False):
        self.imagename = imagename
        self.tag = tag
        self.imageID = imageID
        self.include_packages = include_packages

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.imagename

    def contents(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"CodeEnv type": self.kind, "image name": self.imagename, "tag": self.tag,
                               "image ID": self.imageID}
        if self.include_packages:
            out["packages"] = [list(p) for p in self.packagelist]
        return out


def dockerimageID(imagename: str, tag: str) -> str:
    """The image ID (``sha256:...``) of a local image ``imagename:tag``, asked of the Docker daemon.

    Raises:
        ImportError: the Docker SDK is not installed (the ``docker`` extra).
        ValueError: no such image, as in 0.1.x.
        ProvenanceError: the Docker daemon cannot be reached.
    """
    try:
        import docker
    except ImportError as exc:
        raise MissingDependencyError("dockerimageID needs the Docker SDK: "
                                     "pip install provenance-toolbox[docker]") from exc
    key = f"{imagename}:{tag}"
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        raise ProvenanceError(f"cannot ask the Docker daemon for the ID of {key}: {exc}. Is Docker running, "
                              f"and may this user use its socket? Or pass the image ID to DockerEnv yourself.") from exc
    try:
        return client.images.get(key).id
    except docker.errors.ImageNotFound:
        raise ValueError(f"{key} not found in the current docker image list") from None
    finally:
        client.close()


IMAGE_VARS = ("PTB_DOCKER_IMAGE", "DOCKER_IMAGE", "CONTAINER_IMAGE", "DOCKER_IMAGE_NAME", "IMAGE_NAME")
IMAGE_ID_VARS = ("PTB_DOCKER_IMAGE_ID", "DOCKER_IMAGE_ID", "CONTAINER_IMAGE_ID", "IMAGE_ID")


@functools.cache
def _container_files() -> bool:
    cgroup = read_text("/proc/1/cgroup") or ""
    return (os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
            or any(w in cgroup for w in ("docker", "kubepods", "containerd", "libpod", "lxc")))


def in_container() -> bool:
    """Hints that this process runs in a container (files, cgroups, ``container``, Kubernetes)."""
    return bool(os.environ.get("container") or os.environ.get("KUBERNETES_SERVICE_HOST")
                or _container_files())


def detect_docker() -> Optional[DockerEnv]:
    """The image this process runs in, when someone said which; else ``None``.

    A container cannot see its own image name, so it must be given in the
    environment (``docker run -e``, a Dockerfile ``ENV``, a Kubernetes pod spec):
    ``PTB_DOCKER_IMAGE`` (``name:tag``, ``name@sha256:...`` or
    ``name:tag@sha256:...``) is always trusted; ``DOCKER_IMAGE``,
    ``CONTAINER_IMAGE``, ``DOCKER_IMAGE_NAME`` and ``IMAGE_NAME`` only when
    ``in_container()`` (``/.dockerenv``, ``/run/.containerenv``, container
    cgroups of PID 1, ``$container`` or ``$KUBERNETES_SERVICE_HOST``).
    The ID comes from ``PTB_DOCKER_IMAGE_ID``, ``DOCKER_IMAGE_ID``,
    ``CONTAINER_IMAGE_ID`` or ``IMAGE_ID``, else from the reference's digest.
    """
    ref = os.environ.get("PTB_DOCKER_IMAGE", "").strip()
    if not ref and in_container():
        ref = next((os.environ[v].strip() for v in IMAGE_VARS[1:] if os.environ.get(v, "").strip()), "")
    if not ref:
        return None
    image_id = next((os.environ[v].strip() for v in IMAGE_ID_VARS if os.environ.get(v, "").strip()), None)
    ref, _, digest = ref.partition("@")
    name, tag = ref, (None if digest else "latest")
    if ":" in ref.rsplit("/", 1)[-1]:       # a registry port is not a tag
        name, tag = ref.rsplit(":", 1)
    return DockerEnv(name, tag, image_id or digest or None)

