"""Interactions: every contact with a customer, complaints with an SLA, and NPS/CSAT survey answers.

One package per feature, each with the same files (models, service, router, handlers where events arrive):
interactions/ (record one, import many in bulk, the timeline; store.py is the one path that writes them),
complaints/ (the workflow, the SLA, the overdue flag), replica/ (the local customer replica and the
customer-service client), inbound/ (ERP/SCM events, parked until their customer is known), surveys/
(answers to survey links), reports/ (complaint analytics). handlers.py and router.py assemble the features;
background.py holds the periodic loops; models.py gathers every table into the service's MetaData.
"""
