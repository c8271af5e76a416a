"""Notification senders: webhooks over HTTP, guarded against calls into Worpen's own network."""

from worpen_infra.notify.webhook import HttpWebhookSender

__all__ = ["HttpWebhookSender"]
