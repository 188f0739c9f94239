"""Webhooks: endpoints, signed deliveries and where a delivery may be sent."""
