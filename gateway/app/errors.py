"""One table from errors to HTTP answers: every error body is
``{"code", "message_zh", "message_en", ...}`` with a stable code."""

from __future__ import annotations

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from gateway.errors import GatewayError
from gateway.logging import get_logger

log = get_logger("gateway.http")

# Litestar's own HTTP errors (routing, body limits, validation), in the gateway's words.
_HTTP_CODES: dict[int, tuple[str, str, str]] = {
    400: ("PAYLOAD_INVALID", "请求无效", "The request is invalid"),
    401: ("UNAUTHORIZED", "缺少或无效的 API 密钥", "Missing or unknown API key"),
    403: ("FORBIDDEN", "该密钥的角色无权访问此接口", "This key's role may not use this endpoint"),
    404: ("NOT_FOUND", "未找到", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "不支持该请求方法", "Method not allowed"),
    413: ("PAYLOAD_TOO_LARGE", "报文过大", "The payload is too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "不支持的内容类型", "Unsupported media type"),
    429: ("TOO_MANY_REQUESTS", "请求过于频繁", "Too many requests"),
}


def gateway_error(request: Request, exc: GatewayError) -> Response:
    if exc.status_code >= 500:
        log.error("request failed", path=request.url.path, code=exc.code, message=exc.message_en)
    return Response(exc.to_body(), status_code=exc.status_code)


def http_error(request: Request, exc: HTTPException) -> Response:
    code, zh, en = _HTTP_CODES.get(exc.status_code, ("HTTP_ERROR", "请求失败", "The request failed"))
    body: dict[str, object] = {"code": code, "message_zh": zh, "message_en": en}
    if isinstance(exc, ValidationException) and exc.extra:
        body["details"] = exc.extra
    elif exc.detail and exc.detail not in (en,) and exc.status_code not in (404, 405):
        body["detail"] = exc.detail
    return Response(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path)
    return Response(
        {
            "code": "INTERNAL_ERROR",
            "message_zh": "网关内部错误，请查看日志",
            "message_en": "Internal error; see the gateway log",
        },
        status_code=500,
    )


EXCEPTION_HANDLERS = {GatewayError: gateway_error, HTTPException: http_error, Exception: internal_error}
