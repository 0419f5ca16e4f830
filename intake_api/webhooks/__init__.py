"""Webhooks: partners' and agencies' own systems are told of events (INTEGRATIONS.md).

Subscriptions and deliveries are the intake service's tables; deliveries are made from the event
stream by their own consumer group and sent by a dispatcher that survives restarts.
"""
