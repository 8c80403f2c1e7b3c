"""The two ways the confirmed publisher writes one publish on its channel.

On RabbitMQ through the buffered transport, `packed_frames` packs the publish's frames
(services.runtime.amqp_frames) for the publisher to write to the socket itself; where it
declines (None: another transport, or a shape it does not pack) the publish goes
`publish_general`, through kombu's prepare_message and py-amqp's serializer.
"""

from __future__ import annotations

from typing import Any

from services.runtime.amqp_frames import publish_frames
from services.runtime.amqp_transport import BufferedTCPTransport
from services.runtime.messages import Outgoing


def publish_general(channel: Any, out: Outgoing, exchange: str, headers: dict[str, Any]) -> None:
    """Through kombu's prepare_message and py-amqp's serializer: any shape."""
    properties = {"delivery_mode": 2, "message_id": out.message_id}
    if out.correlation_id:
        properties["correlation_id"] = out.correlation_id
    message = channel.prepare_message(
        out.body, content_type=out.content_type, headers=headers, properties=properties
    )
    channel.basic_publish(
        message, exchange=exchange, routing_key=out.routing_key, mandatory=out.mandatory
    )


def packed_frames(
    channel: Any, out: Outgoing, exchange: str, headers: dict[str, Any]
) -> bytes | None:
    """The publish's frames packed here (amqp_frames) on RabbitMQ, else None."""
    connection = channel.connection
    if connection is None or not isinstance(connection.transport, BufferedTCPTransport):
        return None
    return publish_frames(
        channel.channel_id,
        connection.frame_max,
        exchange,
        out.routing_key,
        out.mandatory,
        out.body,
        out.content_type,
        out.message_id,
        out.correlation_id,
        headers,
    )
