"""Error kinds shared by the services, each with the gRPC status and HTTP status it maps to.

Domain code raises these; servicers and HTTP handlers translate them, so a
caller always gets a precise status and a message saying what to change.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500


class InvalidRequestError(ServiceError, ValueError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFoundError(ServiceError, LookupError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class PreconditionError(ServiceError, RuntimeError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class OverloadedError(ServiceError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class DeadlineError(ServiceError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class CancelledError(ServiceError):
    grpc_code = grpc.StatusCode.CANCELLED
    http_status = 499


class UnauthorizedError(ServiceError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class BodyTooLargeError(ServiceError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413
