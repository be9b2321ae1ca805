"""The durable event store: a queue of received deliveries and their fate."""
