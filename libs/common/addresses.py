"""Where a profile keeps each channel's address: the trait that holds it (decision 0009).

Content reads the address to send to; journey reads whether there is one, to choose among the
channels a send names.
"""

from __future__ import annotations

ADDRESS_TRAITS: dict[str, str] = {
    "email": "email",
    "sms": "phone",
    "push": "push_token",
    "wechat": "wechat_openid",
    "wecom": "wecom_userid",
}
