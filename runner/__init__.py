"""The platform runner: what starts, documents and operates the whole platform (launcher, status, topic
setup, dead-letter replay, settings documentation). It may import every service and the gateway; nothing in
servicekit, contracts, the services or the gateway imports it."""
