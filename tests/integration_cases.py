"""The case every framework integration test reranks: the relevant passage comes LAST, behind near-miss baits
(adults, aspirin) and junk, so only a cross-encoder that reads the query puts it first."""

TEXTS = [
    "Bananas are rich in potassium.",
    "Aspirin is not for children with a viral fever.",
    "Ibuprofen dosing for adults: 200-400 mg.",
    "Ibuprofen for children is dosed by body weight.",
]
QUERY = "ibuprofen dose for a child"
OFF_TOPIC = "a recipe for chocolate chip cookies"
