"""Sample data for the sandbox: a few hundred believable HubSpot contacts and a MailerLite
account that already has a couple of unsubscribed and bounced people."""

from __future__ import annotations

import random
import time
import unicodedata
from typing import Dict, List, Optional, Tuple

from .fakes.hubspot import FakeHubSpot
from .fakes.mailerlite import FakeMailerLite

CONTACTS = 300
FIRST = ["Ana", "Luka", "Zoë", "Jürgen", "Élodie", "Søren", "Marta", "Nikola", "Aino", "Łukasz", "Inês", "Mateo",
         "Chloé", "Björn", "Zoran", "Émile", "Maja", "Tomás", "Ivana", "Noël"]
LAST = ["Novak", "Müller", "Dubois", "Kovačič", "García", "Jørgensen", "Nowak", "Rossi", "Horvat", "Smith",
        "Lindqvist", "Østergaard", "Żak", "Fernández", "Costa", "Schäfer"]
COMPANIES = ["Acme d.o.o.", "Nordlicht GmbH", "Café Lumière", "Blue Fjord AS", "Soleado S.L.", "Tatra Labs",
             "Kettle & Co", "Vértice Digital"]
CITIES = [("Ljubljana", "Slovenia", "1000"), ("München", "Germany", "80331"), ("Lyon", "France", "69001"),
          ("København", "Denmark", "1050"), ("Kraków", "Poland", "30-001"), ("Sevilla", "Spain", "41001"),
          ("Porto", "Portugal", "4000-001"), ("Helsinki", "Finland", "00100")]
TITLES = ["Marketing Manager", "CEO", "Growth Lead", "Developer", "Head of Sales", "Designer", "CTO", ""]
STAGES = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"]
UNSUBSCRIBED_IN_MAILERLITE = (7, 42)  # contacts whose MailerLite subscriber unsubscribed earlier
BOUNCED_IN_MAILERLITE = (13,)
INVALID_ADDRESS = "not-an-email"  # one on purpose: the sandbox shows how a rejected contact is reported


# Letters that Unicode does not decompose into a base letter and an accent: spelt out, or the
# address would lose them (Søren -> sren).
SPELT_OUT = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "æ": "ae", "Æ": "Ae", "ß": "ss", "đ": "d",
                           "Đ": "D", "þ": "th", "Þ": "Th", "œ": "oe", "Œ": "Oe"})
OPTED_OUT_EVERY = 37  # one contact in 37 has opted out of email in HubSpot
WITHOUT_EMAIL = (20,)  # contacts without an email address: skipped


def _ascii(name: str) -> str:
    """Addresses stay ASCII, as nearly all real ones are: Zoë -> zoe, Søren -> soren."""
    return unicodedata.normalize("NFKD", name.translate(SPELT_OUT)).encode("ascii", "ignore").decode().lower()


def contact(i: int, rng: random.Random) -> Dict[str, Optional[str]]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, country, zip_code = rng.choice(CITIES)
    birthday = f"{rng.randrange(1960, 2002)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    return {
        "email": f"{_ascii(first)}.{_ascii(last)}.{i}@example.com",
        "firstname": first, "lastname": last, "company": rng.choice(COMPANIES), "city": city,
        "country": country, "zip": zip_code, "phone": f"+386 1 {rng.randrange(1000000, 9999999)}",
        "jobtitle": rng.choice(TITLES), "numemployees": str(rng.choice([5, 12, 40, 250, 1200])),
        "date_of_birth": birthday, "lifecyclestage": rng.choice(STAGES),
        "hs_email_optout": "true" if i % OPTED_OUT_EVERY == 5 else "false",
    }


def history(email: str) -> Tuple[int, int, int]:
    """(sent, opens, clicks) a sample subscriber starts with, as if MailerLite had been sending it
    campaigns for a while (the engagement the sandbox shows in HubSpot). Same address, same figures."""
    rng = random.Random(email)
    sent = rng.randrange(0, 25)
    opens = sum(rng.random() < 0.45 for _ in range(sent))  # about a newsletter's usual open rate
    return sent, opens, sum(rng.random() < 0.3 for _ in range(opens))


def seed(hubspot: FakeHubSpot, mailerlite: FakeMailerLite, count: int = CONTACTS, seed: int = 2026) -> List[str]:
    """Fill both fakes; returns the HubSpot ids. Deterministic for a given seed."""
    rng = random.Random(seed)
    base = int(time.time() * 1000) - 86_400_000  # modified yesterday
    ids = []
    people = [contact(i, rng) for i in range(count)]
    for i in WITHOUT_EMAIL:
        people[i]["email"] = None  # a contact without an email: skipped
    people[21]["email"] = INVALID_ADDRESS  # an invalid address: rejected, with the reason
    for i, props in enumerate(people):
        ids.append(hubspot.add_contact(props, modified_ms=base + i * 1000))
    seed_companies_and_deals(hubspot, ids, people, rng)
    for i in UNSUBSCRIBED_IN_MAILERLITE:
        mailerlite.add_subscriber(str(people[i]["email"]), status="unsubscribed")
    for i in BOUNCED_IN_MAILERLITE:
        mailerlite.add_subscriber(str(people[i]["email"]), status="bounced")
    return ids


MORE_COMPANIES = ["Lipa Foods", "Karst Analytics", "Brio Retail", "Zenit Bank", "Polar Tools", "Oaza Travel",
                  "Sava Logistics", "Ribnik Media", "Vega Health", "Mura Energy", "Drava Works", "Krka Studio",
                  "Bled Ventures", "Piran Labs", "Soča Software", "Triglav Insurance"]
INDUSTRIES = ["COMPUTER_SOFTWARE", "RETAIL", "BANKING"]
COMPANY_STAGES = ["lead", "opportunity", "customer"]
DEALS = 60
DEAL_STAGES = ["appointmentscheduled", "qualifiedtobuy", "contractsent", "closedwon", "closedlost"]
ARCHIVED_DEALS = (3, 17)  # deleted deals: they never count


def seed_companies_and_deals(hubspot: FakeHubSpot, ids: List[str], people: List[Dict[str, Optional[str]]],
                             rng: random.Random) -> None:
    """Two dozen companies (each contact's own, by its company name, as the Primary one; every fifth
    contact has a second one), 60 deals on a few contacts each (some shared, two archived)."""
    base = int(time.time() * 1000) - 90 * 86_400_000
    companies = {}
    for name in COMPANIES + MORE_COMPANIES:
        companies[name] = hubspot.add_company({
            "name": name, "domain": _ascii(name.split()[0]) + ".example", "industry": rng.choice(INDUSTRIES),
            "numberofemployees": str(rng.choice([8, 40, 120, 900])), "lifecyclestage": rng.choice(COMPANY_STAGES)})
    others = list(companies.values())
    for i, (cid, props) in enumerate(zip(ids, people)):
        own = companies.get(str(props.get("company")))
        if own:
            hubspot.associate_company(cid, own, primary=True)
        if i % 5 == 0:
            hubspot.associate_company(cid, rng.choice(others))
    for d in range(DEALS):
        stage = rng.choice(DEAL_STAGES)
        deal = hubspot.add_deal({"dealname": f"Deal {d + 1}", "dealstage": stage, "pipeline": "default",
                                 "amount": str(rng.choice([500, 1200, 4800, 15000]))},
                                created_ms=base + d * 86_400_000)
        for cid in rng.sample(ids, rng.choice([1, 1, 2, 3])):
            hubspot.associate_deal(cid, deal)
        if d in ARCHIVED_DEALS:
            hubspot.archive_object("deals", deal)
    hubspot.backdate(86_400_000)  # the sample data was made yesterday


def touch(hubspot: FakeHubSpot, count: int) -> List[str]:
    """Edit `count` sample contacts as a person in HubSpot would (a new job title and phone);
    returns their addresses. The least recently edited go first, so repeated touches rotate."""
    with hubspot.lock:
        plain = [(record["modified"], cid) for cid, record in hubspot.contacts.items()
                 if not record["archived"] and "@" in str(record["properties"].get("email") or "")
                 and record["properties"].get("hs_email_optout") != "true"]
        chosen = [cid for _, cid in sorted(plain)[:count]]
        emails = []
        for cid in chosen:
            props = hubspot.contacts[cid]["properties"]
            titles = [t for t in TITLES if t and t != props.get("jobtitle")]
            hubspot.update_contact(str(cid), {"jobtitle": titles[cid % len(titles)],
                                              "phone": f"+386 1 {(cid * 7919 + hubspot.now_ms()) % 9000000 + 1000000}"})
            emails.append(str(props["email"]))
        return emails
