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
    # A mini-program's OpenID differs from the official account's for the same person: its own
    # channel and trait let one deployment use both (decision 0027).
    "wechat_miniprogram": "wechat_miniprogram_openid",
    "wecom": "wecom_userid",
    # A customer is addressed by their external_userid, not a member's userid: customer-contact
    # messages have their own channel and trait, beside application messages (decision 0027).
    "wecom_contact": "wecom_external_userid",
}
