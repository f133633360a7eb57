"""The registry RPCs both services share, server and client side: ListVersions, Promote, Rollback."""

from __future__ import annotations

import json

from services.core.errors import ServiceError
from services.models.registry import VersionInfo
from services.proto.rlhf.v1 import common_pb2


def version_to_proto(info: VersionInfo, active: str) -> common_pb2.ModelVersion:
    metrics = {k: float(v) for k, v in info.metadata.get("metrics", {}).items() if isinstance(v, int | float)}
    return common_pb2.ModelVersion(
        id=info.id,
        parent=info.parent,
        created_at=info.metadata.get("created_at", ""),
        data_hash=info.metadata.get("data_hash", ""),
        metrics=metrics,
        active=info.id == active,
        metadata_json=json.dumps(info.metadata, sort_keys=True),
    )


class VersionCalls:
    """Client side of the registry RPCs, mixed into a GrpcClient whose `stub` has them."""

    stub: object

    def list_versions(self) -> common_pb2.ListVersionsResponse:
        return self.call(self.stub.ListVersions, common_pb2.ListVersionsRequest())

    def promote(self, version: str) -> common_pb2.ActiveVersionChange:
        # Retried on UNAVAILABLE (another replica takes it): promoting the active version again changes nothing.
        return self.call(self.stub.Promote, common_pb2.PromoteRequest(version=version))

    def rollback(self) -> common_pb2.ActiveVersionChange:
        return self.call(self.stub.Rollback, common_pb2.RollbackRequest(), retry=False)


class VersionRpcs:
    """Mixed into a servicer whose `service` has versions(), promote() and rollback()."""

    service: object

    async def ListVersions(self, request, context):
        versions, active = self.service.versions()
        return common_pb2.ListVersionsResponse(versions=[version_to_proto(v, active) for v in versions], active=active)

    async def Promote(self, request, context):
        try:
            active, previous = await self.service.promote(request.version)
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        return common_pb2.ActiveVersionChange(active=active, previous=previous)

    async def Rollback(self, request, context):
        try:
            active, previous = await self.service.rollback()
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        return common_pb2.ActiveVersionChange(active=active, previous=previous)
