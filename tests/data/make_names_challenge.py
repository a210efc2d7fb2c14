"""Build the names *challenge* set for tests/traces/test_names.py.

    .venv/bin/python tests/data/make_names_challenge.py

Writes ``names_challenge.jsonl`` (fixed seed, reproducible, committed).  It is independent
of tests/data/make_names_set.py: other templates (agent traffic rather than single ticket
sentences: tool results as JSON-ish strings, CRM notes, email signatures, chat transcripts,
order confirmations, shipping labels, multi-line addresses, lists of people, possessives,
shouted names), names written by hand here for cultures Faker covers thinly or not in Latin
script (Indian, Turkish, Slavic, Nordic, Latin American, Arabic and East Asian
romanised, Vietnamese; hyphens and apostrophes), titles in many languages, and street
addresses in US/UK/DE/NL/FR/ES/IT/Nordic formats with units and postcodes.

It was written before the detector was measured on it and measured once as is
(bench/README.md "Names" has that BEFORE figure); fixes made after that are general
rules and word lists, never strings from this file.

What counts as personal here, decided up front:

* A person's name: any name of a person, whole ("Omar Silva", "OMAR SILVA",
  "omar silva"), a first name alone where the text addresses or introduces someone
  ("Dear Ana", "this is omar"), a surname after a title ("Frau Keller").
* A street address: the street line, with its house number and unit ("12 Elm Street,
  Apt 4", "Flat 3, 27 Kings Road", "Lindenstraße 14").  The postcode and the city on
  the next line are not counted: on their own they identify an area, not a person, and
  the detector leaves them (so "fully removed" is about the street line).
* Not personal: brands and products, also when a first name is part of them ("Apple
  Pay", "Ford Focus", "Tommy jeans"), carriers, cities, countries, street names without
  a house number ("the Main Street store"), teams, job titles, headings, code and logs.
  A brand that *is* a person's full name ("Louis Vuitton", "Tommy Hilfiger", "Calvin
  Klein") is in neither list: nothing in a text tells it from the person.

Every record is ``{"text", "locale", "form", "spans": [{"kind", "start", "end",
"value"}]}``; a record with no span is a negative that must be stored exactly as sent.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 777_2026

# ------------------------------------------------------------------------ name pools
# (first names, surnames) per culture, romanised as people type them in Latin script.
NAMES = {
    "anglo": (
        [
            "Emily",
            "Jack",
            "Olivia",
            "Liam",
            "Grace",
            "Nathan",
            "Chloe",
            "Ryan",
            "Megan",
            "Connor",
            "Bethany",
            "Declan",
            "Siobhan",
            "Callum",
            "Aoife",
            "Gareth",
            "Rhys",
            "Mary-Kate",
            "Jo-Anne",
        ],
        [
            "O'Brien",
            "McDonald",
            "Fitzgerald",
            "Walsh",
            "Hughes",
            "Patterson",
            "Reynolds",
            "O'Connor",
            "MacLeod",
            "Bennett",
            "Harrington",
            "Kowalczyk",
            "Doyle",
            "Whitaker",
            "Lloyd-Jones",
            "Ashworth",
        ],
    ),
    "french": (
        [
            "Jean-Luc",
            "Marie-Claire",
            "Anne-Sophie",
            "Thibault",
            "Océane",
            "Gaëlle",
            "Benoît",
            "Amélie",
            "Mathéo",
            "Élodie",
            "Jean-Baptiste",
            "Clémence",
        ],
        [
            "Lefèvre",
            "Dubois",
            "Rousseau",
            "Girard",
            "Fontaine",
            "Chevalier",
            "Mercier",
            "D'Angelo",
            "Lemaire",
            "Barbier",
            "Moreau",
            "Faure",
        ],
    ),
    "indian": (
        [
            "Priya",
            "Rahul",
            "Ananya",
            "Arjun",
            "Sneha",
            "Vikram",
            "Kavya",
            "Aditya",
            "Deepika",
            "Rohan",
            "Lakshmi",
            "Sanjay",
            "Pooja",
            "Harpreet",
            "Venkatesh",
        ],
        [
            "Sharma",
            "Iyer",
            "Nair",
            "Reddy",
            "Patel",
            "Gupta",
            "Krishnan",
            "Banerjee",
            "Chatterjee",
            "Menon",
            "Deshpande",
            "Kulkarni",
            "Venkataraman",
            "Singh",
            "Rao",
        ],
    ),
    "turkish": (
        [
            "Mehmet",
            "Ayşe",
            "Emre",
            "Zeynep",
            "Burak",
            "Elif",
            "Oğuz",
            "Gökhan",
            "Selin",
            "Cem",
            "Büşra",
            "Kerem",
            "Hülya",
            "Tuğba",
        ],
        [
            "Y\u0131lmaz",
            "Kaya",
            "Demir",
            "Şahin",
            "Çelik",
            "Öztürk",
            "Ayd\u0131n",
            "Arslan",
            "Doğan",
            "K\u0131l\u0131ç",
            "Aksoy",
            "Erdoğan",
            "Koç",
        ],
    ),
    "slavic": (
        [
            "Agnieszka",
            "Tomasz",
            "Katarzyna",
            "Piotr",
            "Dmitri",
            "Olga",
            "Svetlana",
            "Jiří",
            "Zuzana",
            "Milena",
            "Bogdan",
            "Oksana",
            "Wojciech",
            "Nikola",
        ],
        [
            "Kowalski",
            "Nowak",
            "Wiśniewska",
            "Ivanov",
            "Petrova",
            "Novák",
            "Dvořák",
            "Horvat",
            "Kovačević",
            "Shevchenko",
            "Zielinski",
            "Lewandowski",
            "Sokolova",
        ],
    ),
    "nordic": (
        [
            "Sigrid",
            "Bjørn",
            "Ingrid",
            "Lars",
            "Astrid",
            "Mikael",
            "Freja",
            "Søren",
            "Elin",
            "Magnus",
            "Sanna",
            "Henrik",
            "Linnéa",
            "Jukka",
            "Aino",
        ],
        [
            "Johansson",
            "Lindqvist",
            "Andersen",
            "Haugen",
            "Nieminen",
            "Virtanen",
            "Bergström",
            "Sørensen",
            "Karlsson",
            "Halvorsen",
            "Mäkinen",
            "Eriksen",
        ],
    ),
    "latam": (
        [
            "Alejandro",
            "Valentina",
            "Mateo",
            "Camila",
            "Santiago",
            "Luciana",
            "Joaquín",
            "Ximena",
            "Rodrigo",
            "Fernanda",
            "Gustavo",
            "Daniela",
            "María José",
            "Juan Pablo",
        ],
        [
            "González",
            "Hernández",
            "Ramírez",
            "Castillo",
            "Vargas",
            "Morales",
            "Rojas",
            "Gutiérrez",
            "Mendoza",
            "Navarro",
            "Fuentes",
            "Quispe",
            "Cárdenas",
        ],
    ),
    "arabic": (
        [
            "Omar",
            "Fatima",
            "Youssef",
            "Layla",
            "Khalid",
            "Noura",
            "Hassan",
            "Amira",
            "Tariq",
            "Rania",
            "Abdullah",
            "Mariam",
            "Karim",
            "Samira",
        ],
        [
            "Al-Sayed",
            "Haddad",
            "Khoury",
            "Mansour",
            "Farouk",
            "Nasser",
            "El-Amin",
            "Hamdan",
            "Aziz",
            "Saleh",
            "Bakr",
            "Qureshi",
            "Al-Rashid",
        ],
    ),
    "east_asian": (
        [
            "Wei",
            "Yuki",
            "Hiroshi",
            "Mei",
            "Jun",
            "Haruto",
            "Sakura",
            "Xiaoming",
            "Jiho",
            "Minjun",
            "Seo-yeon",
            "Takeshi",
            "Li Na",
            "Kenji",
        ],
        [
            "Zhang",
            "Tanaka",
            "Wang",
            "Chen",
            "Suzuki",
            "Kim",
            "Park",
            "Watanabe",
            "Liu",
            "Nakamura",
            "Choi",
            "Yamamoto",
            "Huang",
            "Sato",
        ],
    ),
    "vietnamese": (
        [
            "Nguyen Van An",
            "Tran Thi Mai",
            "Le Minh Tuan",
            "Pham Thu Ha",
            "Hoang Duc Anh",
            "Vo Thanh Long",
            "Dang Ngoc Lan",
            "Bui Quang Huy",
        ],
        [],
    ),
}
# Vietnamese full names are written family name first; they are used whole.
CULTURES = list(NAMES)

TITLES = [
    "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Herr", "Frau", "Mme", "Mme.", "M.", "Mlle",
    "Sr.", "Sra.", "Sig.", "Sig.ra", "Dott.", "Dhr.", "Mevr.", "Pan", "Pani", "Mr", "Ms",
]  # fmt: skip

# -------------------------------------------------------------------- address pools
US_STREETS = [
    "Elm Street",
    "Oak Ridge Drive",
    "Maple Avenue",
    "Sunset Blvd",
    "Cedar Lane",
    "Lakeview Court",
    "Pine Hollow Road",
    "Willow Creek Way",
    "Magnolia Terrace",
    "Harbor View Pkwy",
    "N Main St",
    "W 4th Street",
    "Old Mill Rd",
]
US_CITIES = [
    "Springfield, IL 62704",
    "Austin, TX 78701",
    "Portland, OR 97205",
    "Columbus, OH 43215",
    "Raleigh, NC 27601",
    "Boise, ID 83702",
]
US_UNITS = ["Apt 5B", "Apt. 12", "Unit 3", "Suite 210", "#4", "Apt 2C"]
UK_STREETS = [
    "Kings Road",
    "Station Road",
    "Church Lane",
    "Victoria Street",
    "Queensway",
    "Mill Lane",
    "Park Avenue",
    "Highfield Close",
    "Albert Crescent",
    "Orchard Grove",
    "Windsor Gardens",
    "Castle Mews",
]
UK_CITIES = [
    "London SW3 4LY",
    "Manchester M1 2AB",
    "Leeds LS6 3QT",
    "Bristol BS8 1TH",
    "Edinburgh EH3 9DQ",
    "Cardiff CF10 1AA",
]
DE_STREETS = [
    "Lindenstraße",
    "Hauptstr.",
    "Bahnhofstraße",
    "Goethestraße",
    "Am Markt",
    "Schillerweg",
    "Kastanienallee",
    "Friedrichstraße",
    "Rosenweg",
    "Mühlenstraße",
    "Berliner Straße",
    "Marktplatz",
]
DE_CITIES = ["10115 Berlin", "80331 München", "50667 Köln", "20095 Hamburg", "01067 Dresden"]
NL_STREETS = [
    "Prinsengracht",
    "Kerkstraat",
    "Dorpsstraat",
    "Stationsweg",
    "Julianalaan",
    "Oudegracht",
    "Molenweg",
    "Beatrixlaan",
    "Van Baerlestraat",
    "Marktplein",
]
NL_CITIES = ["1017 KD Amsterdam", "3511 AB Utrecht", "2511 CV Den Haag", "5611 EM Eindhoven"]
FR_STREETS = [
    "rue des Lilas",
    "avenue Jean Jaurès",
    "boulevard Voltaire",
    "rue de la Paix",
    "place du Marché",
    "chemin des Vignes",
    "rue Victor Hugo",
    "allée des Tilleuls",
    "impasse des Roses",
    "quai de la Tournelle",
]
FR_CITIES = ["75011 Paris", "69002 Lyon", "13001 Marseille", "33000 Bordeaux"]
ES_STREETS = [
    "Calle Mayor",
    "Calle de Alcalá",
    "Avenida de la Constitución",
    "Paseo de Gracia",
    "Calle del Sol",
    "Plaza Mayor",
    "Carrer de Balmes",
    "Avenida Libertad",
]
ES_CITIES = ["28013 Madrid", "08007 Barcelona", "41004 Sevilla", "46002 Valencia"]
IT_STREETS = [
    "Via Garibaldi",
    "Via Roma",
    "Corso Vittorio Emanuele",
    "Piazza Navona",
    "Via dei Mille",
    "Viale Europa",
    "Via Nazionale",
    "Corso Buenos Aires",
]
IT_CITIES = ["20121 Milano", "00186 Roma", "10121 Torino", "50122 Firenze"]
NORDIC_STREETS = [
    "Storgatan",
    "Drottninggatan",
    "Kungsvägen",
    "Nørrebrogade",
    "Vesterbrogade",
    "Karl Johans gate",
    "Mannerheimintie",
    "Bygdøy allé",
    "Sveavägen",
    "Aleksanterinkatu",
    "Strandvejen",
    "Thorvald Meyers gate",
]
NORDIC_CITIES = ["111 52 Stockholm", "2200 København N", "0161 Oslo", "00100 Helsinki"]


def _street_line(rng: random.Random, fmt: str) -> tuple[str, str]:
    """(street line, city line) in one country's format."""
    n = rng.randint(1, 240)
    if fmt == "us":
        line = f"{rng.randint(10, 9800)} {rng.choice(US_STREETS)}"
        if rng.random() < 0.45:
            line += rng.choice([", ", " "]) + rng.choice(US_UNITS)
        return line, rng.choice(US_CITIES)
    if fmt == "uk":
        line = f"{n} {rng.choice(UK_STREETS)}"
        r = rng.random()
        if r < 0.3:
            line = f"Flat {rng.randint(1, 12)}, {line}"
        elif r < 0.45:
            line = f"Unit {rng.randint(1, 30)}, {line}"
        return line, rng.choice(UK_CITIES)
    if fmt == "de":
        line = f"{rng.choice(DE_STREETS)} {n}{rng.choice(['', '', 'a', 'b'])}"
        return line, rng.choice(DE_CITIES)
    if fmt == "nl":
        line = f"{rng.choice(NL_STREETS)} {n}{rng.choice(['', '', '-2', ' A', '-1'])}"
        return line, rng.choice(NL_CITIES)
    if fmt == "fr":
        sep = rng.choice([" ", ", "])
        line = f"{n}{rng.choice(['', '', ' bis'])}{sep}{rng.choice(FR_STREETS)}"
        return line, rng.choice(FR_CITIES)
    if fmt == "es":
        line = (
            f"{rng.choice(ES_STREETS)} {n}"
            if rng.random() < 0.5
            else (f"{rng.choice(ES_STREETS)}, {n}")
        )
        if rng.random() < 0.4:
            line += f", {rng.randint(1, 8)}º {rng.choice('ABCD')}"
        return line, rng.choice(ES_CITIES)
    if fmt == "it":
        line = (
            f"{rng.choice(IT_STREETS)} {n}"
            if rng.random() < 0.6
            else (f"{rng.choice(IT_STREETS)}, {n}")
        )
        return line, rng.choice(IT_CITIES)
    line = f"{rng.choice(NORDIC_STREETS)} {n}{rng.choice(['', '', ' B', 'A'])}"
    return line, rng.choice(NORDIC_CITIES)


ADDRESS_FORMATS = ["us", "uk", "de", "nl", "fr", "es", "it", "nordic"]

# --------------------------------------------------------------------- templates
# {N} "First Last", {N2}/{N3} other people, {F} first name, {L} surname, {T} title,
# {f}/{fl} lower-case first / full name, {NU} upper-case full name,
# {A} street line, {C} its city line (not personal), {AU} street line in upper case.
PERSON_TEMPLATES = [
    ("json", '{{"customer": "{N}", "order_id": "ORD-55812", "status": "shipped"}}'),
    ("json", "lookup_customer -> customer: {N} | tier: gold | open_tickets: 2"),
    ("json", "name={N}; plan=pro; seats=5"),
    ("json", '[{{"id": 812, "assignee": "{N}", "priority": "high"}}]'),
    ("json", "Result: found 1 match. Full name: {N}. Member since 2019."),
    ("crm", "CRM note 14/03: called {N}, left a voicemail about the renewal."),
    ("crm", "Spoke with {N} today. Wants the invoice split across two cost centres."),
    ("crm", "Follow-up: {N} confirmed the replacement arrived in good shape."),
    ("crm", "Account owner changed from {N} to {N2} on request of the client."),
    ("ticket", "Ticket #48213 opened by {N}: laptop will not boot after the update."),
    ("ticket", "Reporter: {N}\nSeverity: 2\nSummary: cannot log in since Tuesday"),
    ("ticket", "Assigned to {N} (Tier 2). Customer waiting for a callback."),
    (
        "signature",
        "Let me know if anything else is needed.\n\nBest,\n{N}\n"
        "Senior Account Manager | Northwind Traders",
    ),
    ("signature", "Thanks for the quick turnaround!\n\nKind regards,\n{N}\nHead of Procurement"),
    ("signature", "See attached.\n--\n{N}\nCustomer Success Lead"),
    ("signature", "Warm regards,\n{N}"),
    (
        "chat",
        "[10:42] Agent: How can I help you today?\n"
        "[10:43] Customer: hi, this is {f}, my order is late",
    ),
    ("chat", "Agent: Could you confirm the name on the account?\nCustomer: sure, it's {N}"),
    ("chat", "user: {f} here, the app crashes when i upload a photo"),
    ("chat", "customer> my name's {f} and i was billed twice"),
    ("chat", "Visitor: hello, I'm {N} and I need to change my delivery slot"),
    ("order", "Order #100234 confirmed for {N}. Estimated delivery: Friday."),
    ("order", "Thank you for your purchase, {F}! Your order ORD-7731 is being packed."),
    ("order", "Invoice INV-2026-0412 issued to {N}, total EUR 149.00."),
    ("list", "Attendees: {N}, {N2} and {N3}"),
    ("list", "CC: {N}; {N2}"),
    ("list", "- {N}\n- {N2}\n- {N3}"),
    ("possessive", "{N}'s order arrived with a broken seal."),
    ("possessive", "Refund for {N}'s second subscription was approved."),
    ("punct", "Escalation (owner: {N})."),
    ("punct", "Who approved this? {N}?"),
    ("punct", "Callback requested by {N}!"),
    ("caps", "ATTN: {NU}"),
    ("caps", "{NU} - REFUND REQUEST - ORDER 5512"),
    ("caps", "PASSENGER: {NU}  SEAT 14C"),
    ("greeting", "Hi {F},\n\nYour replacement ships tomorrow."),
    ("greeting", "Dear {F}, thanks for your patience while we investigated."),
    ("greeting", "Hello {F} — your ticket has been resolved."),
    ("greeting", "Good afternoon {F}, your booking is confirmed."),
    ("title", "{T} {L} asked us to cancel the standing order."),
    ("title", "Contract signed by {T} {L} on 2 May."),
    ("title", "Please call back {T} {L} before noon."),
    ("title", "Re: complaint from {T} {L}"),
    ("lower", "this is {f}, is my refund on the way?"),
    ("lower", "{f} here, quick question about shipping"),
    ("lower", "my name's {fl} and i cannot reset my password"),
    ("lower", "hey its {fl}, i ordered the wrong size"),
    ("lower", "hi, {fl} here. where is my parcel?"),
    ("lower", "it's {f} again, still waiting on the replacement"),
    ("lower", "hello, my name is {fl}, account locked"),
    ("lower", "i am {fl} and i would like a refund please"),
]
ADDRESS_TEMPLATES = [
    ("multiline", "{N}\n{A}\n{C}"),
    ("label", "SHIP TO:\n{NU}\n{AU}\n{CU}"),
    ("order", "Order #88412 will be delivered to {A}, {C} on Monday."),
    ("json", '{{"shipping_address": "{A}, {C}", "carrier": "DHL"}}'),
    ("crm", "Customer moved; new address is {A}."),
    ("address", "Please send the documents to {A}, {C}."),
    ("address", "Billing: {A}\n{C}"),
    ("address", "pickup failed at {A}, nobody home"),
]

# ------------------------------------------------------------------------ negatives
NEGATIVES = [
    # brands and products (a first name inside a brand is still a brand)
    "My Samsung Galaxy A54 keeps restarting after the update.",
    "The IKEA Billy shelf arrived with one side panel missing.",
    "Apple Pay failed at checkout, Google Pay worked.",
    "Google Pixel 7a screen flickers at low brightness.",
    "The Ford Focus service booking was moved to Thursday.",
    "Customer wants to return the Dell XPS 13 within the trial period.",
    "Order includes two Philips Hue bulbs and a Bosch drill.",
    "The Dyson Airwrap attachment is missing from the box.",
    "Amazon Fire TV Stick does not show the Netflix app.",
    "The Toyota Corolla loan car must be returned by Friday.",
    "Nintendo Switch Lite console shows error 2123-1502.",
    "Microsoft Teams calls drop after ten minutes.",
    "Sony Bravia remote pairing fails.",
    "The Canon PIXMA printer needs a new ink cartridge.",
    "Heinz Tomato Ketchup was out of stock in the last delivery.",
    "Our Adobe Acrobat licence expires next month.",
    "Playing Minecraft Java Edition drains the battery fast.",
    "The Volkswagen Golf recall letter arrived today.",
    "Ben and Jerry ice cream melted during delivery.",
    "Johnson Controls thermostat shows offline.",
    "Dr. Martens boots were delivered in the wrong size.",
    "Victoria Secret voucher could not be applied.",
    "The Wendy burger coupon expired.",
    "Apple Watch Ultra strap is too short for the customer.",
    "Lenovo ThinkPad X1 Carbon keyboard replacement approved.",
    "Please ship the Logitech G Pro headset to the warehouse.",
    "Bose SoundLink Flex arrived without a cable.",
    "The Kindle Oasis page buttons stopped working.",
    # carriers and payment
    "DHL Express picked up the parcel this morning.",
    "Royal Mail Tracked 48 shows the item at the delivery office.",
    "UPS Ground estimated arrival: Wednesday by end of day.",
    "FedEx Home Delivery attempted delivery, no one answered.",
    "PostNL could not deliver, package at the pickup point.",
    "La Poste Colissimo suivi indique un retard.",
    "Deutsche Post returned the letter as undeliverable.",
    "Paid with Mastercard Gold, refund goes back to the same card.",
    "SEPA Direct Debit mandate was revoked by the bank.",
    "Klarna Pay Later instalment failed twice.",
    # places
    "Shipment left Rotterdam and is expected in Antwerp tomorrow.",
    "Our Denver office is closed on Monday for Labor Day.",
    "Customer is travelling between Buenos Aires and Santiago.",
    "The Tokyo and Seoul warehouses share one stock pool.",
    "Delivery to Hong Kong takes five business days.",
    "Store opening in Kuala Lumpur pushed to spring.",
    "Flights from Lima to Bogota were cancelled due to weather.",
    "Parcel is at the customs office in Istanbul.",
    "Returns from Mexico are processed in Laredo.",
    "Ho Chi Minh City hub scanned the parcel.",
    "New Delhi and Chennai support queues are merged.",
    "The Reykjavik pop-up store sold out.",
    # streets without a house number
    "The Main Street store closes at 6 pm on Saturdays.",
    "Our Oxford Street branch has the item in stock.",
    "Pick it up at the Bahnhofstraße location.",
    "The Champs-Élysées flagship is being renovated.",
    "Traffic on Park Avenue delayed the courier.",
    "The Kings Road shop no longer stocks this model.",
    "Deliveries to Via Roma are restricted on Sundays.",
    "Road works on Elm Street may delay the truck.",
    # weekdays, months, holidays
    "Monday and Tuesday are fully booked, Wednesday has two slots.",
    "Refunds requested in January are paid out in February.",
    "The Easter Monday holiday delays all shipments.",
    "Black Friday traffic doubled the queue on Thursday.",
    "Sale runs from March 3 to April 14.",
    # teams, roles, job titles
    "Escalated to the Customer Experience team.",
    "Senior Account Manager approval is required above 500 EUR.",
    "Please loop in Legal and Compliance before replying.",
    "Head of Customer Operations signed off the refund policy.",
    "Regional Sales Director EMEA will join the call.",
    "Assigned to Tier 1 Support, queue General Enquiries.",
    "Product Owner and Lead Engineer reviewed the bug.",
    "Chief Financial Officer asked for the quarterly numbers.",
    "Forwarded to Accounts Receivable for reconciliation.",
    "Site Reliability Engineering is investigating the outage.",
    "Customer Success Manager will call next week.",
    "Quality Control rejected batch 7 of the blue mugs.",
    # headings in Title Case
    "Refund Request Received",
    "Order Shipped: Your Package Is On Its Way",
    "Action Required: Verify Your Email Address",
    "Weekly Summary For Support Leads",
    "Payment Failed - Please Update Your Card",
    "Welcome To Your New Account",
    "Delivery Exception Reported",
    "Return Label Generated Successfully",
    "Password Reset Requested",
    "Subscription Renewal Reminder",
    "Case Closed Without Response",
    "Service Level Agreement Breached",
    "Terms And Conditions Updated",
    "Your Invoice Is Ready",
    "Warranty Claim Approved",
    # sentence-initial capitals
    "Thanks for waiting, the refund is on its way.",
    "Still no update from the courier.",
    "Sorry for the delay, we had a system outage.",
    "Unfortunately the item is discontinued.",
    "Good news, the replacement has shipped.",
    "Please note the warehouse is closed on Friday.",
    "Hope this helps, let us know otherwise.",
    "Will check again tomorrow morning.",
    "Happy to help with anything else.",
    "Grace period ends in three days.",
    "Sunny weather delayed nothing; the truck broke down.",
    "Frank feedback from the customer: the app is slow.",
    "Hope Street branch is closed.",
    "May we ask for a photo of the label?",
    # code, logs, keys, ids, amounts, dates
    "ERROR 2026-03-14T10:22:31Z PaymentService: Timeout after 30000 ms",
    "WARN [OrderWorker] Retry 3/5 for order ORD-99812",
    "SELECT id, status FROM orders WHERE status = 'PENDING' LIMIT 50",
    "def handle_refund(order_id, amount): return Refund(order_id, amount)",
    'Traceback (most recent call last): File "app.py", line 42, in main',
    '{"event": "refund.issued", "amount": 49.9, "currency": "EUR"}',
    '{"first_name_field": "string", "last_name_field": "string"}',
    "GET /api/v1/orders/8812 200 14ms",
    "Status: Delivered | Carrier: GLS | Weight: 2.4 kg",
    "Amount due: USD 1,204.50 by 2026-04-30",
    "Order ORD-2291-77 total 89.90 EUR, VAT 15.35 EUR",
    "Tracking number JD014600006281023456 at hub HAM-3",
    "Invoice 2026/0412 dated 12.03.2026, net 30 days",
    "Build 4.12.0 Release Candidate deployed to Staging",
    "INFO Celery Worker ready, concurrency 4",
    "HTTP 503 Service Unavailable from Payment Gateway",
    "New Relic alert: Apdex Score below threshold",
    "Kubernetes Pod CrashLoopBackOff in Namespace Billing",
    "import React from 'react'; export default App;",
    'git commit -m "Fix Order Export"',
    "Content-Type: application/json; charset=utf-8",
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "Batch 12 of 40 processed, 3 Failed, 37 Succeeded",
    "CPU 84%, Memory 2.1 GB, Disk 71%",
    "SKU HX-2291 Colour Navy Blue Size Medium",
    "Rating: 4 out of 5 stars, Verified Purchase",
    # misc dangerous
    "Customer Service Hours: Monday To Friday 9 To 5",
    "Net Promoter Score rose to 41 in Q3.",
    "Buy One Get One Free ends Sunday.",
    "Free Shipping on orders above 50 EUR.",
    "Gift Card balance is 25.00 GBP.",
    "The Grand Canyon tour was rescheduled.",
    "Golden Gate Bridge photo print arrived creased.",
    "Star Wars Lego set missing the minifigures.",
    "The Lord Of The Rings extended edition DVD skips.",
    "Game Of Thrones season pass was charged twice.",
    "Real Madrid jersey size M, printed number 7.",
    "Manchester United tickets were refunded.",
    "Red Bull Racing cap shipped in the wrong colour.",
    "World Health Organization guidelines apply.",
    "Federal Reserve rate decision moved the FX rate.",
    "European Union customs rules changed in July.",
    "Saint Patrick Day sale ends tonight.",
    "Mother Day bouquet arrived wilted.",
    "Prime Day deals are live until midnight.",
    "Apple Store Covent Garden appointment cancelled.",
    "Windows Update KB5034441 failed to install.",
    "Google Workspace Business Starter seats: 12",
    "Visa Infinite card benefits include lounge access.",
    "American Airlines flight AA 100 delayed.",
    "Air France baggage claim reference CDGAF12345.",
    "British Airways Executive Club points missing.",
    "Marriott Bonvoy booking confirmation is pending.",
    "Hilton Honors points were not credited.",
    "Lufthansa Miles and More statement is wrong.",
    "The Ritz Carlton room upgrade was refused.",
    "Sainsbury Nectar points not applied.",
    "Wells Fargo Active Cash card declined.",
    "Kraft Heinz shipment delayed at port.",
    "Rolls Royce engine parts in transit.",
]


# Written after the detector was fixed on the sets above and measured once, unseen, as
# the AFTER figure on new text (bench/README.md "Names"); not tuned on.
PERSON_TEMPLATES_2 = [
    ("json", "get_user(42) => {{'display_name': '{N}', 'locale': 'en-GB'}}"),
    ("json", 'contact.full_name = "{N}"'),
    ("crm", "Left a message for {N} re: overdue invoice."),
    ("crm", "Meeting with {N} moved to next Tuesday."),
    ("ticket", "Requester {N} cannot download the statement."),
    ("ticket", "On behalf of {N}: please cancel order 7731."),
    ("signature", "Regards\n{N}\nOperations"),
    ("signature", "Cheers,\n{F}"),
    ("chat", "Customer: hey {f} here again, any news?"),
    ("chat", "Customer: hi im {fl}, my parcel is missing"),
    ("chat", "Agent ({N}): I have refunded the shipping fee."),
    ("order", "Gift message for {N}: Happy birthday!"),
    ("list", "Approvers: {N} / {N2}"),
    ("possessive", "We updated {N}'s billing details."),
    ("title", "Kind reminder to {T} {L} about the unpaid balance."),
    ("greeting", "Hey {F},\nquick update on your return."),
    ("caps", "RECIPIENT: {NU}"),
]
ADDRESS_TEMPLATES_2 = [
    ("address", "Deliver to: {A}, {C}"),
    ("address", "Address on file: {A}"),
    ("label", "{NU}\n{AU}\n{CU}"),
    ("crm", "Visited the customer at {A} this morning."),
]
NEGATIVES_2 = [
    "Thank you for contacting Acme Support.",
    "The Lenovo Yoga Slim 7 arrived with a dead pixel.",
    "Your Amazon Basics cable has shipped.",
    "Hermes Parcelshop at the Shell station is closed.",
    "Shipping via Royal Mail Special Delivery Guaranteed.",
    "Customer prefers Google Meet over Zoom.",
    "The Marriott Vacation Club booking was cancelled.",
    "Delivery to Cape Town via DHL Freight.",
    "Rio de Janeiro warehouse reports low stock.",
    "Update: Account Manager Reassigned",
    "Meeting Notes: Quarterly Business Review",
    "Status Changed From Open To Pending",
    "We close early on New Year's Eve.",
    "Please fill in the Returns Authorisation Form.",
    "The Samsung Bespoke fridge door is misaligned.",
    "Porsche Taycan charging cable recall notice.",
    "Sent from my iPhone",
    "Get Outlook for Android",
    "Order Summary: 2 items, Subtotal 59.98 EUR",
    "WARN PaymentRetryJob attempt=3 order=ORD-1187",
    "Stripe Radar blocked the payment as high risk.",
    "The Instant Pot Duo lid seal is cracked.",
    "Cancel the Netflix Standard plan at end of cycle.",
    "HelloFresh box arrived without ice packs.",
    "Booking.com refund for the Lisbon hotel is pending.",
    "Uber Eats order was delivered to the wrong door.",
    "The Philips Airfryer XXL basket coating is peeling.",
    "Our Amsterdam Zuid office moves in May.",
    "Fraud Team Review Required",
    "Customer Satisfaction Survey Results",
    "North America and Latin America queues are merged.",
    "Apple AirPods Pro case will not charge.",
    "The Sonos Beam soundbar drops Wi-Fi.",
    "The Garmin Venu strap is too small.",
    "Pick up from Central Station Locker 14.",
    "Shipment from Long Beach port delayed.",
    "Ticket created via Web Form, Channel Email.",
    "The Nike Pegasus shoes were returned unworn.",
    "Manager Approval Pending For Refund",
    "Sales Ops will update the Price Book.",
]


def _person(rng: random.Random, culture: str) -> tuple[str, str, str]:
    """(first, last, full) for one culture."""
    firsts, lasts = NAMES[culture]
    if culture == "vietnamese":
        full = rng.choice(firsts)
        parts = full.split()
        return parts[-1], parts[0], full
    first, last = rng.choice(firsts), rng.choice(lasts)
    return first, last, f"{first} {last}"


def _fill(template: str, rng: random.Random, culture: str) -> tuple[str, list[dict]]:
    people = [_person(rng, culture if k == 0 else rng.choice(CULTURES)) for k in range(3)]
    fmt = rng.choice(ADDRESS_FORMATS)
    street, city = _street_line(rng, fmt)
    first, last, full = people[0]
    if culture == "vietnamese":
        # Only the given name is used alone; the full name keeps family-name-first order.
        last = full
    values = {
        "{N}": ("PERSON", full),
        "{N2}": ("PERSON", people[1][2]),
        "{N3}": ("PERSON", people[2][2]),
        "{NU}": ("PERSON", full.upper()),
        "{F}": ("PERSON", first),
        "{L}": ("PERSON", last),
        "{f}": ("PERSON", first.lower()),
        "{fl}": ("PERSON", full.lower()),
        "{A}": ("ADDRESS", street),
        "{AU}": ("ADDRESS", street.upper()),
        "{C}": (None, city),
        "{CU}": (None, city.upper()),
        "{T}": (None, rng.choice(TITLES)),
    }
    template = template.replace("{{", "\0").replace("}}", "\1")
    out = ""
    spans: list[dict] = []
    pos = 0
    for m in re.finditer(r"\{[A-Za-z0-9]+\}", template):
        out += template[pos : m.start()]
        kind, value = values[m.group(0)]
        if kind is not None:
            spans.append({"kind": kind, "start": len(out), "end": len(out) + len(value)})
        out += value
        pos = m.end()
    out += template[pos:]
    out = out.replace("\0", "{").replace("\1", "}")
    for s in spans:
        s["value"] = out[s["start"] : s["end"]]
    return out, spans, fmt


def build(n_person: int, n_address: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n_person):
        culture = CULTURES[i % len(CULTURES)]
        form, template = PERSON_TEMPLATES[rng.randrange(len(PERSON_TEMPLATES))]
        text, spans, _ = _fill(template, rng, culture)
        records.append({"text": text, "locale": culture, "form": form, "spans": spans})
    for i in range(n_address):
        culture = CULTURES[i % len(CULTURES)]
        form, template = ADDRESS_TEMPLATES[rng.randrange(len(ADDRESS_TEMPLATES))]
        text, spans, fmt = _fill(template, rng, culture)
        records.append({"text": text, "locale": f"{culture}/{fmt}", "form": form, "spans": spans})
    for text in NEGATIVES:
        records.append({"text": text, "locale": "", "form": "negative", "spans": []})
    return records


def main() -> int:
    records = build(420, 200, SEED)
    # The second part, from its own seed, appended (the first part stays as measured).
    global PERSON_TEMPLATES, ADDRESS_TEMPLATES, NEGATIVES
    PERSON_TEMPLATES, ADDRESS_TEMPLATES, NEGATIVES = (
        PERSON_TEMPLATES_2,
        ADDRESS_TEMPLATES_2,
        NEGATIVES_2,
    )
    records += [dict(r, form=r["form"] + "/2") for r in build(170, 60, SEED + 2)]
    path = HERE / "names_challenge.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    neg = sum(not r["spans"] for r in records)
    print(f"challenge: {len(records) - neg} with names/addresses, {neg} without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
