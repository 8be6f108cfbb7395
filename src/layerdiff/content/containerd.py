"""containerd's content for served calls, including calls that do not say whose it is.

containerd keeps content per namespace and sends a differ the caller's namespace and
lease in metadata headers. Up to at least 2.1 it does not for *proxy* differs (containerd
issue #12328): an Apply or Diff arrives with neither. So, when the headers are missing:

- Apply reads the blob through any namespace that has it (the configured fallback first,
  then every namespace); with containerd's default ``content_sharing_policy = "shared"``
  content is the same blob in every namespace that holds it.
- Diff writes the new layer in the fallback namespace and then makes it known in every
  other namespace, since the caller's is unknown: with the shared policy that commits no
  bytes, otherwise the bytes are copied. Each namespace gets a lease of ours that
  expires (``containerd.io/gc.expire``), so the blob survives until the caller refers to
  it, and no longer than that unless it does.

When containerd sends the headers, none of this happens: the caller's namespace and lease
are used as they are.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from layerdiff.api import leases_pb2, namespaces_pb2
from layerdiff.api.leases_pb2_grpc import LeasesStub
from layerdiff.api.namespaces_pb2_grpc import NamespacesStub
from layerdiff.api.status import error_from_rpc
from layerdiff.content.remote import NAMESPACE_HEADER, RemoteStore
from layerdiff.content.store import Store
from layerdiff.errors import AlreadyExistsError, NotFoundError, UnavailableError

log = logging.getLogger("layerdiff.content")

LABEL_GC_EXPIRE = "containerd.io/gc.expire"
_COPY_CHUNK = 1 << 20


class ContainerdContent:
    """Stores for served calls, backed by containerd's Content service."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        fallback_namespace: str = "default",
        lease_expiry: timedelta = timedelta(hours=1),
    ) -> None:
        self._channel = channel
        self._fallback = fallback_namespace
        self._expiry = lease_expiry
        self._namespaces = NamespacesStub(channel)
        self._leases = LeasesStub(channel)

    def for_apply(self, namespace: str, lease: str, digest: str) -> Store:
        """The store to read ``digest`` from."""
        if namespace:
            return RemoteStore(self._channel, namespace, lease)
        for candidate in self._candidates():
            store = RemoteStore(self._channel, candidate)
            with contextlib.suppress(NotFoundError):
                store.info(digest)
                return store
        raise NotFoundError(f"content {digest} is in no containerd namespace")

    def for_diff(self, namespace: str, lease: str) -> Store:
        """The store to write a new layer to."""
        if namespace:
            return RemoteStore(self._channel, namespace, lease)
        return RemoteStore(self._channel, self._fallback, self._new_lease(self._fallback))

    def published(self, namespace: str, digest: str) -> None:
        """Make a layer a Diff wrote known where its caller may look for it."""
        if namespace:
            return  # the caller's own namespace has it
        source = RemoteStore(self._channel, self._fallback)
        info = source.info(digest)
        for other in self._candidates():
            if other == self._fallback:
                continue
            target = RemoteStore(self._channel, other, self._new_lease(other))
            try:
                writer = target.writer(f"layerdiff-publish-{digest}", info.size, digest)
            except (AlreadyExistsError, UnavailableError):
                continue  # there already, or another call is publishing the same layer
            try:
                if writer.offset < info.size:  # not shared: the bytes must travel
                    with contextlib.closing(source.reader(digest)) as blob:
                        offset = writer.offset
                        while offset < info.size:
                            chunk = blob.read_at(offset, _COPY_CHUNK)
                            writer.write(chunk)
                            offset += len(chunk)
                writer.commit(info.size, digest, dict(info.labels))
            except AlreadyExistsError:
                pass
            finally:
                writer.close()

    def _candidates(self) -> list[str]:
        try:
            listed = self._namespaces.List(namespaces_pb2.ListNamespacesRequest())
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        names = [n.name for n in listed.namespaces]
        return [self._fallback, *(n for n in names if n != self._fallback)]

    def _new_lease(self, namespace: str) -> str:
        expires = datetime.now(UTC) + self._expiry
        request = leases_pb2.CreateRequest(
            id=f"layerdiff-{uuid.uuid4().hex}",
            labels={LABEL_GC_EXPIRE: expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )
        try:
            reply = self._leases.Create(request, metadata=((NAMESPACE_HEADER, namespace),))
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        return reply.lease.id
