"""How every task runs: the Celery app and its config, the broker transport, the ``@operation``
decorator and its retry policy, queues and publishing, message headers, per-process clients, the beat
schedule, logging, metrics, redaction, Flower and health probes. Knows no flow and no command."""
