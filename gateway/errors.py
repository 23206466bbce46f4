"""The gateway's one error tree. Every error a person can see has a stable code and a message in
Chinese and English; API answers render it as ``{"code", "message_zh", "message_en", ...}``.

    GatewayError
    ├── RequestError                 the caller sent something we cannot take (4xx)
    │   ├── PayloadInvalid           400 PAYLOAD_INVALID   (not JSON, not UTF-8, not the platform's shape)
    │   │   └── MappingError         400 PAYLOAD_INVALID   a dictionary could not read a path
    │   ├── PayloadTooLarge          413 PAYLOAD_TOO_LARGE
    │   ├── UnknownPlatform          404 UNKNOWN_PLATFORM
    │   ├── UnknownShop              409 UNKNOWN_SHOP
    │   ├── NotFound                 404 NOT_FOUND
    │   ├── PayloadPurged            410 PAYLOAD_PURGED    the raw payload was deleted by the retention policy
    │   ├── Unauthorized             401 UNAUTHORIZED
    │   ├── Forbidden                403 FORBIDDEN
    │   └── Conflict                 409 CONFLICT
    ├── ConfigError                  CONFIG_INVALID        a dictionary, rule set or TOML file is wrong
    └── PartnerError                 talking to an ERP or a platform went wrong; sorted by what happens next
        ├── RetryableError           ERP_UNAVAILABLE       nothing was written; try again later
        ├── UnknownOutcomeError      ERP_OUTCOME_UNKNOWN   it may have been written; look it up first
        └── PermanentError           ERP_REJECTED          the partner said no; no retry can fix it

Library errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    code = "INTERNAL_ERROR"
    status_code = 500
    message_zh = "网关内部错误"
    message_en = "Internal gateway error"

    def __init__(
        self,
        message_en: str | None = None,
        message_zh: str | None = None,
        *,
        hint: str | None = None,
        **details: Any,
    ) -> None:
        self.message_en = message_en or type(self).message_en
        self.message_zh = message_zh or type(self).message_zh
        self.hint = hint
        self.details = details
        super().__init__(self.message_en)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message_zh": self.message_zh, "message_en": self.message_en}
        if self.hint:
            body["hint"] = self.hint
        body.update(self.details)
        return body


class RequestError(GatewayError):
    status_code = 400


class PayloadInvalid(RequestError):
    code = "PAYLOAD_INVALID"
    status_code = 400
    message_zh = "报文无效"
    message_en = "The payload is invalid"


class MappingError(PayloadInvalid):
    """A dictionary could not read or convert a source path; ``path`` names it."""

    def __init__(self, path: str, reason: str, reason_zh: str | None = None) -> None:
        super().__init__(
            f"{path}: {reason}",
            f"{path}：{reason_zh or reason}",
            path=path,
        )
        self.path = path
        self.reason = reason


class PayloadTooLarge(RequestError):
    code = "PAYLOAD_TOO_LARGE"
    status_code = 413
    message_zh = "报文过大"
    message_en = "The payload is too large"

    @classmethod
    def check(cls, body: bytes, max_bytes: int) -> None:
        """Raise it when ``body`` is over ``max_bytes``, saying both sizes."""
        if len(body) > max_bytes:
            raise cls(
                f"the body is {len(body)} bytes; the limit is {max_bytes}",
                f"报文 {len(body)} 字节，超过上限 {max_bytes} 字节",
                limit=max_bytes,
            )


class UnknownPlatform(RequestError):
    code = "UNKNOWN_PLATFORM"
    status_code = 404
    message_zh = "未知平台"
    message_en = "Unknown platform"


class UnknownShop(RequestError):
    code = "UNKNOWN_SHOP"
    status_code = 409
    message_zh = "店铺未配置"
    message_en = "The shop is not configured"


class NotFound(RequestError):
    code = "NOT_FOUND"
    status_code = 404
    message_zh = "未找到"
    message_en = "Not found"


class PayloadPurged(RequestError):
    """The raw payload a request needs was deleted by the retention policy (``gateway.retention``);
    the records that name it (order, intercept, audit entries with its hash) are all still there."""

    code = "PAYLOAD_PURGED"
    status_code = 410
    message_zh = "原始报文已按保留期限删除"
    message_en = "The raw payload was deleted under the retention policy"


class Unauthorized(RequestError):
    code = "UNAUTHORIZED"
    status_code = 401
    message_zh = "缺少或无效的 API 密钥"
    message_en = "Missing or unknown API key"


class Forbidden(RequestError):
    code = "FORBIDDEN"
    status_code = 403
    message_zh = "该密钥的角色无权访问此接口"
    message_en = "This key's role may not use this endpoint"


class Conflict(RequestError):
    code = "CONFLICT"
    status_code = 409
    message_zh = "状态冲突"
    message_en = "Conflict"


class ConfigError(GatewayError):
    code = "CONFIG_INVALID"
    message_zh = "配置无效"
    message_en = "Invalid configuration"


class PartnerError(GatewayError):
    """A conversation with a partner system failed. ``partner_message`` keeps its own words."""

    status_code = 502

    def __init__(
        self,
        message_en: str | None = None,
        message_zh: str | None = None,
        *,
        partner_message: str | None = None,
        hint: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message_en, message_zh, hint=hint, **details)
        self.partner_message = partner_message


class RetryableError(PartnerError):
    code = "ERP_UNAVAILABLE"
    message_zh = "ERP 暂不可用，稍后重试"
    message_en = "The ERP is unavailable; will retry"


class UnknownOutcomeError(PartnerError):
    code = "ERP_OUTCOME_UNKNOWN"
    message_zh = "ERP 调用结果未知，需先查询"
    message_en = "The ERP call's outcome is unknown; look it up before retrying"


class PermanentError(PartnerError):
    code = "ERP_REJECTED"
    message_zh = "ERP 拒绝了该单据"
    message_en = "The ERP rejected the document"


class DeliveryInterrupted(PartnerError):
    """Every attempt of a delivery was used up, some cut off before the ERP answered."""

    code = "DELIVERY_INTERRUPTED"
    message_zh = "投递多次在 ERP 应答前中断"
    message_en = "The delivery was cut off before the ERP answered too many times"
