"""One task per API method of RosDomofon, Bitrix24 and RosDomofon's Kafka topics: thin bodies over the
clients, named ``<service>.<method>``, enqueued by other services by name."""
