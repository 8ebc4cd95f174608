"""Kafka errors, translated from confluent-kafka in exactly one place (:func:`translate`).

Every class also inherits one category of :mod:`clients.errors`::

    KafkaClientError (IntegrationError)
    ├── KafkaUnavailableError   (RetryLaterError)  broker down, timeouts, leader moves, local queue full
    ├── KafkaAuthError          (DoNotRetryError)  SASL/TLS failure, topic/group/cluster authorization
    ├── KafkaRecordError        (FixInputError)    record too large, invalid, unknown topic/partition
    │   └── PoisonRecordError                      a consumed record we cannot read (not JSON, wrong
    │                                              shape, no sender): dead-letter it
    └── KafkaFatalError         (DoNotRetryError)  librdkafka fatal error: the client must be rebuilt

A code not listed falls back on librdkafka's own hint: retriable -> unavailable, otherwise refused.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from clients.errors import DoNotRetryError, FixInputError, IntegrationError, RetryLaterError


class KafkaClientError(IntegrationError):
    service = "kafka"


class KafkaUnavailableError(KafkaClientError, RetryLaterError):
    """The broker could not be reached or did not answer in time; the same call can succeed later."""


class KafkaAuthError(KafkaClientError, DoNotRetryError):
    """Credentials, TLS or authorization were refused (RosDomofon authorizes per consumer group)."""


class KafkaRecordError(KafkaClientError, FixInputError):
    """The broker refused this record or its topic; sending it again cannot help."""


class PoisonRecordError(KafkaRecordError):
    """A consumed record that cannot become a message; it belongs in the dead-letter topic."""


class KafkaFatalError(KafkaClientError, DoNotRetryError):
    """librdkafka raised a fatal error: this client instance is unusable."""


E = KafkaError
UNAVAILABLE_CODES: frozenset[int] = frozenset(
    {
        E._TRANSPORT,
        E._ALL_BROKERS_DOWN,
        E._TIMED_OUT,
        E._TIMED_OUT_QUEUE,
        E._MSG_TIMED_OUT,
        E._QUEUE_FULL,
        E._RESOLVE,
        E._WAIT_COORD,
        E._RETRY,
        E._ISR_INSUFF,
        E._DESTROY_BROKER,
        E._MAX_POLL_EXCEEDED,
        E._UNKNOWN_BROKER,
        E._IN_PROGRESS,
        E._PREV_IN_PROGRESS,
        E._PURGE_QUEUE,
        E._PURGE_INFLIGHT,
        E._WAIT_CACHE,
        E.REQUEST_TIMED_OUT,
        E.NETWORK_EXCEPTION,
        E.BROKER_NOT_AVAILABLE,
        E.LEADER_NOT_AVAILABLE,
        E.NOT_LEADER_FOR_PARTITION,
        E.NOT_ENOUGH_REPLICAS,
        E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        E.COORDINATOR_NOT_AVAILABLE,
        E.COORDINATOR_LOAD_IN_PROGRESS,
        E.NOT_COORDINATOR,
        E.REBALANCE_IN_PROGRESS,
        E.KAFKA_STORAGE_ERROR,
        E.REPLICA_NOT_AVAILABLE,
        E.THROTTLING_QUOTA_EXCEEDED,
        E.UNKNOWN_LEADER_EPOCH,
        E.FENCED_LEADER_EPOCH,
        E.OFFSET_NOT_AVAILABLE,
        E.UNSTABLE_OFFSET_COMMIT,
        E.NOT_CONTROLLER,
    }
)
AUTH_CODES: frozenset[int] = frozenset(
    {
        E._AUTHENTICATION,
        E._SSL,
        E.SASL_AUTHENTICATION_FAILED,
        E.ILLEGAL_SASL_STATE,
        E.UNSUPPORTED_SASL_MECHANISM,
        E.TOPIC_AUTHORIZATION_FAILED,
        E.GROUP_AUTHORIZATION_FAILED,
        E.CLUSTER_AUTHORIZATION_FAILED,
        E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        E.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
        E.SECURITY_DISABLED,
    }
)
RECORD_CODES: frozenset[int] = frozenset(
    {
        E.MSG_SIZE_TOO_LARGE,
        E.RECORD_LIST_TOO_LARGE,
        E.INVALID_MSG,
        E.INVALID_MSG_SIZE,
        E.INVALID_RECORD,
        E.INVALID_REQUIRED_ACKS,
        E.INVALID_TIMESTAMP,
        E.POLICY_VIOLATION,
        E.TOPIC_EXCEPTION,
        E.UNKNOWN_TOPIC_OR_PART,
        E.UNKNOWN_TOPIC_ID,
        E._UNKNOWN_TOPIC,
        E._UNKNOWN_PARTITION,
        E._INVALID_ARG,
        E._BAD_MSG,
        E._KEY_SERIALIZATION,
        E._VALUE_SERIALIZATION,
        E._KEY_DESERIALIZATION,
        E._VALUE_DESERIALIZATION,
        E.UNSUPPORTED_COMPRESSION_TYPE,
        E.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        E.INVALID_CONFIG,
        E.INVALID_GROUP_ID,
        E.INVALID_SESSION_TIMEOUT,
        E.OFFSET_METADATA_TOO_LARGE,
    }
)


def error_class(error: KafkaError) -> type[KafkaClientError]:
    """The category of one librdkafka error code."""
    code = error.code()
    if error.fatal():
        return KafkaFatalError
    if code in AUTH_CODES:
        return KafkaAuthError
    if code in UNAVAILABLE_CODES:
        return KafkaUnavailableError
    if code in RECORD_CODES:
        return KafkaRecordError
    return KafkaUnavailableError if error.retriable() else KafkaRecordError


def translate(exc: BaseException | KafkaError, *, context: str = "") -> KafkaClientError:
    """The one place foreign Kafka exceptions become ours; call as ``raise translate(exc) from exc``."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, KafkaClientError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        exc = exc.args[0]
    if isinstance(exc, KafkaError):
        cls = error_class(exc)
        return cls(f"{prefix}{exc.str()}", code=exc.name())
    if isinstance(exc, BufferError):  # produce() with librdkafka's local queue full
        return KafkaUnavailableError(f"{prefix}local producer queue full", code="_QUEUE_FULL")
    if isinstance(exc, TimeoutError):
        return KafkaUnavailableError(f"{prefix}timed out", code="_TIMED_OUT")
    if isinstance(exc, (TypeError, ValueError)):
        return KafkaRecordError(f"{prefix}invalid argument: {exc}", code="_INVALID_ARG")
    return KafkaUnavailableError(f"{prefix}{type(exc).__name__}: {exc}")
