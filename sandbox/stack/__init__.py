"""The stack runner behind ``rdb24 up``: local stand-ins, the simulators and our roles as one stack.

``plan`` decides what runs (a pure function of the operator's inputs); ``runner`` executes the plan;
``embedded`` starts the bundled Redis (Valkey) and Kafka (Tansu) servers; ``redis_db`` claims a database
index on a shared local Redis; ``wiring`` hands the simulators' credentials to our roles and says when
each role is healthy, using the ``probes``; ``gate`` holds our roles until the wiring is done;
``state`` is the state file other commands read; ``table`` renders the services table.

Nothing here imports the task layer (an import-linter contract): the runner starts our roles as
processes and talks to them over the wire only.
"""
