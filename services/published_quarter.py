"""The quarter Ombudsman Babel published for January to March 2022, as records to import.

``build()`` makes a consistent, deterministic history (intakes from October 2021 to April 2022
and every workflow step of their cases) whose figures for ``2022-Q1`` are the published ones
(``PUBLISHED``); ``load()`` imports it through the public API as an admin, back-dating with
``received_at`` and ``effective_at``, many records at a time but each case's steps in order.

Who gets what, in the quarter (``cases received in 2022`` are all received in Q1):

============================================  ========  ===========  =================
group                                          cases     examined Q1  closed in Q1
============================================  ========  ===========  =================
2021, examined, open on 1 January                   11           11                7
2021, in verification, open on 1 January             6            0                3
2021, closed before 1 January                        7            0                0
2022, examined in the quarter                       82           82               43
2022, closed at verification in the quarter        160            0              160
2022, open in verification on 31 March             238            0                0
============================================  ========  ===========  =================

Closed in the quarter: 213, against a target of 260 (81.92 %).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

WIB = timezone(timedelta(hours=7), "WIB")  # Asia/Jakarta, no daylight saving time
PERIOD = "2022-Q1"
TARGET = {"closures": 260, "examination_closures": 60}
QUARTER_END = datetime(2022, 3, 31, 16, 0, tzinfo=WIB)

# What the office published (../shared/background/ombudsman-babel-q1-2022.txt), in the terms
# of GET /v1/metrics/summary?period=2022-Q1.
PUBLISHED: dict[str, Any] = {
    "received": 480,
    "received_in_march": 294,
    "peak_month": "2022-03",
    "top_substance": "electricity",
    "on_the_spot_locations": 15,
    "examination_by_received_year": {"2022": 82, "2021": 11},
    "closures_target": 260,
    "closed": 213,
    "closure_rate_against_target": 0.8192,
}

AGENCIES: dict[str, tuple[str, str]] = {  # substance -> (code, name)
    "electricity": ("pln-uiw-babel", "PT PLN (Persero) UIW Bangka Belitung"),
    "land": ("bpn-pangkalpinang", "Kantor Pertanahan Kota Pangkalpinang"),
    "population_administration": ("disdukcapil-bangka",
                                  "Dinas Kependudukan dan Pencatatan Sipil Kabupaten Bangka"),
    "police": ("polda-babel", "Kepolisian Daerah Kepulauan Bangka Belitung"),
    "health": ("rsud-depati-hamzah", "RSUD Depati Hamzah Pangkalpinang"),
    "education": ("disdik-babel", "Dinas Pendidikan Provinsi Kepulauan Bangka Belitung"),
    "social_security": ("bpjs-kes-pangkalpinang", "BPJS Kesehatan Cabang Pangkalpinang"),
    "water": ("pdam-tirta-pinang", "Perumda Air Minum Tirta Pinang"),
    "local_government": ("pemkab-bangka-tengah", "Pemerintah Kabupaten Bangka Tengah"),
    "civil_service": ("bkpsdm-belitung", "BKPSDM Kabupaten Belitung"),
    "transport_infrastructure": ("dishub-babel",
                                 "Dinas Perhubungan Provinsi Kepulauan Bangka Belitung"),
}
SUMMARIES = {
    "electricity": "Pemadaman listrik berulang tanpa pemberitahuan",
    "land": "Sertifikat tanah tidak kunjung terbit",
    "population_administration": "Pencetakan KTP elektronik tertunda berbulan-bulan",
    "police": "Laporan polisi tidak ditindaklanjuti",
    "health": "Pasien BPJS diminta membeli obat sendiri",
    "education": "Pungutan pada penerimaan peserta didik baru",
    "social_security": "Kepesertaan BPJS dinonaktifkan tanpa pemberitahuan",
    "water": "Air PDAM tidak mengalir selama seminggu",
    "local_government": "Bantuan sosial tidak sampai ke warga",
    "civil_service": "Tunjangan pegawai tidak dibayarkan",
    "transport_infrastructure": "Jalan provinsi rusak tidak diperbaiki",
}
# Ombudsman On the Spot: 15 public-service locations visited in the quarter.
SPOTS = [
    "Kantor Pelayanan PLN ULP Pangkalpinang", "Mal Pelayanan Publik Kota Pangkalpinang",
    "Kantor Pertanahan Kabupaten Bangka", "RSUD Depati Hamzah", "Kantor Samsat Sungailiat",
    "Disdukcapil Kabupaten Bangka Barat", "Puskesmas Koba", "Kantor Camat Toboali",
    "Pasar Pagi Pangkalpinang", "Pelabuhan Tanjung Kalian Muntok", "Bandara Depati Amir",
    "RSUD Marsidi Judono Tanjung Pandan", "Kantor Desa Air Anyir", "SMA Negeri 1 Manggar",
    "Kantor BPJS Kesehatan Pangkalpinang",
]
REGENCIES = ["Pangkalpinang", "Bangka", "Bangka Barat", "Bangka Tengah", "Bangka Selatan",
             "Belitung", "Belitung Timur"]
FIRST = ["Siti", "Ahmad", "Dewi", "Rudi", "Nur", "Hendra", "Yuliana", "Agus", "Rina", "Bambang",
         "Fitri", "Joko", "Lestari", "Irwan", "Maya", "Syahrial"]
LAST = ["Aminah", "Saputra", "Lestari", "Hartono", "Halimah", "Wijaya", "Sari", "Pratama",
        "Rahman", "Susanto", "Anggraini", "Kurniawan"]

MONTHS: dict[int, Counter[str]] = {  # received reports of the quarter, by month and substance
    1: Counter(electricity=14, land=16, population_administration=12, police=10, health=9,
               education=8, social_security=8, water=5, local_government=5, civil_service=3),
    2: Counter(electricity=18, land=17, population_administration=13, police=10, health=10,
               education=9, social_security=8, water=5, local_government=4,
               transport_infrastructure=2),
    3: Counter(electricity=200, land=20, population_administration=16, police=12, health=12,
               education=10, social_security=10, water=8, local_government=6),
}
# The electricity-outage complaint post (posko pengaduan) of March 2022 and the other ways in.
MARCH_ELECTRICITY_CHANNELS = Counter(complaint_post=176, whatsapp=10, walk_in=6, phone=4,
                                     on_the_spot=2, website=2)
OTHER_CHANNELS = ["walk_in", "letter", "whatsapp", "website", "national_portal", "email",
                  "phone", "walk_in", "whatsapp", "national_portal"]


@dataclass(frozen=True)
class Step:
    action: str
    at: datetime
    fields: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"action": self.action, "effective_at": self.at.isoformat(), **self.fields}


@dataclass
class Record:
    """One intake (the POST /v1/complaints body) and the steps of its case, in order."""

    body: dict[str, Any]
    steps: list[Step] = field(default_factory=list)

    @property
    def received_at(self) -> datetime:
        return datetime.fromisoformat(self.body["received_at"])

    @property
    def last_at(self) -> datetime:
        return self.steps[-1].at if self.steps else self.received_at


@dataclass
class Quarter:
    records: list[Record]
    period: str = PERIOD
    target: dict[str, int] = field(default_factory=lambda: dict(TARGET))

    @property
    def transitions(self) -> int:
        return sum(len(r.steps) for r in self.records)


class _Maker:
    """Builds records with a seeded random source: same seed, same history."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def moment(self, day: date, *, earliest: int = 8, latest: int = 15) -> datetime:
        minute = self.rng.randrange(earliest * 60, latest * 60)
        return datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=WIB)

    def workday(self, first: date, last: date) -> date:
        while True:
            day = first + timedelta(days=self.rng.randrange((last - first).days + 1))
            if day.weekday() < 5:
                return day

    def intake(self, at: datetime, substance: str, *, kind: str = "report",
               channel: str = "walk_in", place: str | None = None,
               first_to_agency: bool | None = True) -> Record:
        self.serial += 1
        code, name = AGENCIES[substance]
        regency = self.rng.choice(REGENCIES)
        body: dict[str, Any] = {
            "kind": kind, "channel": channel, "substance": substance,
            "reported_agency": {"code": code, "name": name},
            "summary": SUMMARIES[substance],
            "description": f"{SUMMARIES[substance]} ({regency}); laporan nomor {self.serial}.",
            "incident_date": (at.date() - timedelta(days=self.rng.randrange(1, 20))).isoformat(),
            "location": {"regency": regency, "place": place} if place else {"regency": regency},
            "received_at": at.isoformat(),
        }
        if kind == "own_initiative":
            body["incident_date"] = None
        else:
            body["reporter"] = {
                "name": f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}",
                "phone": f"+62812{self.rng.randrange(10**7, 10**8)}",
                "address": regency, "confidential": self.rng.random() < 0.1,
            }
            body["reported_to_agency_first"] = first_to_agency
        if channel == "complaint_post":
            body["external_reference"] = f"POSKO-2022-{self.serial:04d}"
        elif channel == "national_portal":
            body["external_reference"] = f"SP4N-{at.year}-{self.serial:05d}"
        return Record(body)

    def steps(self, record: Record, plan: list[tuple[str, dict[str, Any]]], *,
              hours: tuple[int, int], until: datetime, start: datetime | None = None) -> None:
        """Appends ``plan`` after the last step (or ``start``), ``hours`` apart, by ``until``."""
        after = start or record.last_at
        gaps = [self.rng.randrange(*hours) * 3600 + self.rng.randrange(3600) for _ in plan]
        room = (until - after).total_seconds()
        if sum(gaps) > room:
            gaps = [max(60, int(g * room / sum(gaps)) - 60) for g in gaps]
        for (action, fields), gap in zip(plan, gaps, strict=True):
            after = after + timedelta(seconds=gap)
            record.steps.append(Step(action, after, fields))


CLARIFY = ("request_clarification", {"note": "Mohon klarifikasi tertulis atas laporan ini."})
EXAMINE = ("start_examination", {"assignee": "asisten.pemeriksaan.1"})
REGISTER = ("register", {"complexity": "medium"})


def _respond(resolution: str) -> tuple[str, dict[str, Any]]:
    return ("respond", {"note": "Tanggapan narahubung instansi terlapor.",
                        "resolution": resolution})


def _close(reason: str) -> tuple[str, dict[str, Any]]:
    return ("close", {"reason": reason, "note": "Laporan hasil pemeriksaan (LHP) disampaikan."})


def _reject(reason: str) -> tuple[str, dict[str, Any]]:
    return ("reject", {"reason": reason})


FIND = ("find_maladministration", {"maladministration": "undue_delay"})
TRANSFER = ("transfer", {"transferred_to": "Ombudsman RI Perwakilan Sumatera Selatan"})
WITHDRAW = ("withdraw", {"note": "Pelapor mencabut laporannya."})


def _received_q1(maker: _Maker) -> list[Record]:
    """The 480 received reports of the quarter, with their kinds and channels."""
    records: list[Record] = []
    spot = iter(SPOTS)
    for month, substances in MONTHS.items():
        last_day = date(2022, month + 1, 1) - timedelta(days=1)
        entries = sorted(substances.elements())
        maker.rng.shuffle(entries)
        channels: Iterator[str] = iter(sorted(MARCH_ELECTRICITY_CHANNELS.elements()))
        spots_this_month = 5
        for index, substance in enumerate(entries):
            if month == 3 and substance == "electricity":
                channel = next(channels)
                # The outage post ran from 7 March; the peak came in mid-March.
                day = maker.workday(date(2022, 3, 7), date(2022, 3, 25))
            else:
                channel = OTHER_CHANNELS[index % len(OTHER_CHANNELS)]
                if spots_this_month > 0:  # five On the Spot visits a month
                    channel, spots_this_month = "on_the_spot", spots_this_month - 1
                day = maker.workday(date(2022, month, 3), last_day)
            place = next(spot, None) if channel == "on_the_spot" else None
            if channel == "on_the_spot" and place is None:
                place = maker.rng.choice(SPOTS).upper() + "  "  # a place seen before, re-typed
            rapid = index % 12 == 0 if month == 3 and substance == "electricity" \
                else month < 3 and index % 25 == 7
            kind = "rapid_response" if rapid else "report"
            records.append(maker.intake(maker.moment(day), substance, kind=kind,
                                        channel=channel, place=place))
    # Own-initiative investigations (IAPS) replace three reports, one per month.
    for month, substance in ((1, "local_government"), (2, "education"), (3, "health")):
        victim = next(r for r in records if r.body["substance"] == substance
                      and r.received_at.month == month and r.body["kind"] == "report"
                      and r.body["channel"] not in ("on_the_spot", "national_portal"))
        replaced = maker.intake(victim.received_at, substance, kind="own_initiative",
                                channel="social_media")
        records[records.index(victim)] = replaced
    # One late entry on the evening of 31 March: still March, local time.
    late = next(r for r in records if r.body["channel"] == "walk_in"
                and r.received_at.month == 3 and r.body["substance"] == "land")
    records[records.index(late)] = maker.intake(
        datetime(2022, 3, 31, 23, 30, tzinfo=WIB), "land", channel="email")
    return records


def _examined_q1(maker: _Maker, pool: list[Record]) -> None:
    """82 reports received in the quarter and examined in it; 43 closed by 31 March."""
    by_plan: list[tuple[int, list[tuple[str, dict[str, Any]]], datetime]] = [
        (20, [REGISTER, EXAMINE, CLARIFY, _respond("resolved"), _close("resolved_by_agency")],
         QUARTER_END),
        (10, [REGISTER, EXAMINE, _close("no_maladministration")], QUARTER_END),
        (6, [REGISTER, EXAMINE, CLARIFY, _respond("disputed"), FIND,
             _close("corrective_action_completed")], QUARTER_END),
        (4, [REGISTER, EXAMINE, WITHDRAW], QUARTER_END),
        # awaiting the agency on 31 March: asked by mid-March, so past the 14-day due date
        (8, [REGISTER, EXAMINE, CLARIFY], datetime(2022, 3, 14, 12, tzinfo=WIB)),
        (4, [REGISTER, EXAMINE, CLARIFY], QUARTER_END),
        (8, [REGISTER, EXAMINE, CLARIFY, _respond("explained")], QUARTER_END),
        (15, [REGISTER, EXAMINE], QUARTER_END),
        (4, [REGISTER, EXAMINE, FIND], QUARTER_END),
    ]
    assert sum(n for n, _, _ in by_plan) + 3 == 82 == len(pool)
    own = [r for r in pool if r.body["kind"] == "own_initiative"]
    reports = [r for r in pool if r.body["kind"] != "own_initiative"]
    iterator = iter(reports)
    for count, plan, until in by_plan:
        for _ in range(count):
            record = next(iterator)
            maker.steps(record, plan, hours=(20, 24 * 8), until=until)
    for record in own:  # own initiative: opened as registered
        maker.steps(record, [EXAMINE, CLARIFY, _respond("resolved"),
                             _close("resolved_by_agency")], hours=(20, 24 * 6),
                    until=QUARTER_END)
    # Some of the open ones move on after the quarter: closed in April.
    for record in [r for r in reports if r.steps and r.steps[-1].action == "respond"
                   and r.steps[-2].action == "request_clarification"
                   and len(r.steps) == 4][:4]:
        maker.steps(record, [_close("resolved_by_agency")], hours=(1, 48),
                    until=datetime(2022, 4, 20, tzinfo=WIB),
                    start=datetime(2022, 4, 4, 9, tzinfo=WIB))


def _verified_q1(maker: _Maker, records: list[Record]) -> None:
    """160 closed at verification in the quarter; the rest stay open in verification."""
    posko = [r for r in records if r.body["channel"] == "complaint_post"]
    rest = [r for r in records if r.body["channel"] != "complaint_post"]
    reasons = [("already_resolved", posko[:70])]
    others = iter(rest)
    for reason, count in (("not_reported_to_agency", 30), ("out_of_jurisdiction", 20),
                          ("incomplete", 10), ("duplicate", 8)):
        reasons.append((reason, [next(others) for _ in range(count)]))
    for reason, chosen in reasons:
        for record in chosen:
            if reason == "not_reported_to_agency" and record.body["kind"] == "report":
                record.body["reported_to_agency_first"] = False
            maker.steps(record, [_reject(reason)], hours=(2, 24 * 5), until=QUARTER_END)
    for _ in range(12):
        maker.steps(next(others), [REGISTER, TRANSFER], hours=(4, 24 * 4), until=QUARTER_END)
    for index in range(10):
        plan = [WITHDRAW] if index % 2 else [REGISTER, WITHDRAW]
        maker.steps(next(others), plan, hours=(4, 24 * 4), until=QUARTER_END)
    # Open in verification on 31 March: 120 registered, 118 not yet verified.
    remaining = [*others, *posko[70:]]
    assert len(remaining) == 238, len(remaining)
    for index, record in enumerate(remaining[:120]):
        maker.steps(record, [REGISTER], hours=(4, 24 * 3), until=QUARTER_END)
        if index < 20:  # examined after the quarter
            maker.steps(record, [EXAMINE], hours=(1, 48),
                        until=datetime(2022, 4, 25, tzinfo=WIB),
                        start=datetime(2022, 4, 5, 9, tzinfo=WIB))
    for record in remaining[120:130]:  # rejected after the quarter
        maker.steps(record, [_reject("already_resolved")], hours=(1, 48),
                    until=datetime(2022, 4, 25, tzinfo=WIB),
                    start=datetime(2022, 4, 5, 9, tzinfo=WIB))


def _year_2021(maker: _Maker) -> list[Record]:
    """Reports of late 2021: 17 still open on 1 January 2022 and 7 closed before it."""
    records: list[Record] = []
    december = datetime(2021, 12, 30, 15, tzinfo=WIB)
    substances = ["land", "police", "electricity", "health", "population_administration",
                  "education", "social_security", "water", "land", "police", "local_government"]
    for index, substance in enumerate(substances):  # examined, open on 1 January
        record = maker.intake(maker.moment(maker.workday(date(2021, 10, 4), date(2021, 11, 26))),
                              substance, channel=OTHER_CHANNELS[index % len(OTHER_CHANNELS)])
        maker.steps(record, [REGISTER, EXAMINE], hours=(24, 24 * 10), until=december)
        if index < 5:
            maker.steps(record, [CLARIFY, _respond("resolved"), _close("resolved_by_agency")],
                        hours=(24, 24 * 12), until=datetime(2022, 2, 25, tzinfo=WIB),
                        start=datetime(2022, 1, 4, 9, tzinfo=WIB))
        elif index < 7:  # asked in December, answered in January
            maker.steps(record, [CLARIFY], hours=(1, 48), until=december)
            maker.steps(record, [_respond("explained"), _close("no_maladministration")],
                        hours=(24, 24 * 10), until=datetime(2022, 2, 28, tzinfo=WIB),
                        start=datetime(2022, 1, 3, 9, tzinfo=WIB))
        elif index < 9:
            maker.steps(record, [FIND], hours=(24, 24 * 20),
                        until=datetime(2022, 3, 15, tzinfo=WIB),
                        start=datetime(2022, 1, 10, 9, tzinfo=WIB))
        records.append(record)
    for index, substance in enumerate(["land", "police", "health", "water", "land", "education"]):
        record = maker.intake(maker.moment(maker.workday(date(2021, 12, 1), date(2021, 12, 17))),
                              substance, channel="letter")
        if index >= 3:
            maker.steps(record, [REGISTER], hours=(24, 24 * 4), until=december)
        january = datetime(2022, 1, 5, 9, tzinfo=WIB)
        until = datetime(2022, 2, 10, tzinfo=WIB)
        if index == 0:
            maker.steps(record, [_reject("duplicate")], hours=(24, 24 * 9), until=until,
                        start=january)
        elif index == 1:
            maker.steps(record, [_reject("out_of_jurisdiction")], hours=(24, 24 * 9),
                        until=until, start=january)
        elif index == 3:
            maker.steps(record, [TRANSFER], hours=(24, 24 * 9), until=until, start=january)
        elif index in (4, 5):  # examined only after the quarter
            maker.steps(record, [EXAMINE], hours=(1, 48), until=datetime(2022, 4, 20,
                                                                          tzinfo=WIB),
                        start=datetime(2022, 4, 6, 9, tzinfo=WIB))
        records.append(record)
    # Closed before the quarter began.
    spot = maker.intake(maker.moment(date(2021, 12, 8)), "population_administration",
                        channel="on_the_spot", place="Kantor Kecamatan Muntok")
    maker.steps(spot, [_reject("incomplete")], hours=(24, 48), until=december)
    records.append(spot)
    for index, substance in enumerate(["land", "police", "electricity", "health", "water"]):
        record = maker.intake(maker.moment(maker.workday(date(2021, 9, 6), date(2021, 11, 10))),
                              substance, channel="walk_in")
        plan = [[_reject("duplicate")], [REGISTER, TRANSFER], [WITHDRAW],
                [REGISTER, EXAMINE, _close("no_maladministration")],
                [_reject("in_court")]][index]
        maker.steps(record, plan, hours=(24, 24 * 10), until=december)
        records.append(record)
    # Closed at 23:30 on 31 December, local time: 2021 still, however late.
    boundary = maker.intake(maker.moment(date(2021, 11, 15)), "land", channel="walk_in")
    maker.steps(boundary, [REGISTER, EXAMINE], hours=(24, 24 * 10), until=december)
    boundary.steps.append(Step("close", datetime(2021, 12, 31, 23, 30, tzinfo=WIB),
                               {"reason": "examination_stopped"}))
    records.append(boundary)
    return records


def _contacts(maker: _Maker) -> list[Record]:
    """Consultations (KNL) and copied letters (tembusan): contacts, not received reports."""
    records: list[Record] = []
    substances = sorted(AGENCIES)
    for index in range(40):  # consultations in the quarter, 8 of them at On the Spot desks
        month = 1 + index % 3
        day = maker.workday(date(2022, month, 3), date(2022, month, 28))
        channel, place = ["walk_in", "phone", "whatsapp", "walk_in", "on_the_spot"][index % 5], None
        if channel == "on_the_spot":
            place = "  " + SPOTS[(index * 7) % len(SPOTS)].lower()
        records.append(maker.intake(maker.moment(day), substances[index % len(substances)],
                                    kind="consultation", channel=channel, place=place))
    for index in range(12):
        month = 1 + index % 3
        day = maker.workday(date(2022, month, 3), date(2022, month, 28))
        records.append(maker.intake(maker.moment(day), substances[(index * 5) % len(substances)],
                                    kind="copy_letter", channel="letter"))
    for index in range(5):  # late 2021
        day = maker.workday(date(2021, 11, 1), date(2021, 12, 30))
        records.append(maker.intake(maker.moment(day), substances[index], kind="consultation",
                                    channel="phone"))
    return records


def _april(maker: _Maker) -> list[Record]:
    """After the quarter, to show its edges: 06:00 on 1 April is April in Jakarta."""
    records = [maker.intake(datetime(2022, 4, 1, 6, 0, tzinfo=WIB), "electricity",
                            channel="whatsapp")]
    for substance in ("land", "police", "health", "water"):
        records.append(maker.intake(maker.moment(maker.workday(date(2022, 4, 4),
                                                               date(2022, 4, 8))),
                                    substance, channel="walk_in"))
    records.append(maker.intake(maker.moment(date(2022, 4, 6)), "transport_infrastructure",
                                kind="consultation", channel="on_the_spot",
                                place="Pelabuhan Pangkalbalam"))
    return records


def build(seed: int = 2022) -> Quarter:
    maker = _Maker(seed)
    received = _received_q1(maker)
    early = sorted((r for r in received if r.received_at < datetime(2022, 3, 1, tzinfo=WIB)
                    and r.body["channel"] != "complaint_post"), key=lambda r: r.received_at)
    own = [r for r in received if r.body["kind"] == "own_initiative"]
    # Examined: the three own-initiative ones and 79 reports spread over January and February.
    reports = [r for r in early if r.body["kind"] != "own_initiative"]
    spacing = len(reports) / 79
    examined = [reports[int(i * spacing)] for i in range(79)]
    _examined_q1(maker, [*examined, *own])
    chosen = {id(r) for r in examined} | {id(r) for r in own}
    _verified_q1(maker, [r for r in sorted(received, key=lambda r: r.received_at)
                         if id(r) not in chosen])
    records = [*_year_2021(maker), *received, *_contacts(maker), *_april(maker)]
    return Quarter(records)


# --- importing through the API -------------------------------------------------------------


@dataclass
class Api:
    """Where the services answer (one base URL for all in one) and the admin token."""

    client: httpx.AsyncClient
    token: str
    intake: str = ""
    case: str = ""
    metrics: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Loaded:
    complaints: int
    transitions: int
    seconds: float
    case_ids: list[str]


class ImportFailed(RuntimeError):
    pass


# A busy server answers 429 (over a rate limit) or 503 (saturated, API.md "Under load and
# abuse") before doing anything, with Retry-After: the request is sent again after that wait.
# A pause never shorter than this, whatever Retry-After says (0, or a date past).
SHORTEST_PAUSE = 0.1
# The longest one Retry-After is taken at its word, and the most one request waits in all
# before the import gives up on a server that stays busy.
LONGEST_PAUSE = 30.0
PATIENCE = 300.0


def refused_unrun(response: httpx.Response) -> bool:
    """A 429, or a 503 saying the service was saturated (admission refused the request before
    anything ran): sent again, it cannot be taken twice. Another 503 (a backing service down)
    may follow a commit whose answer was lost, so the import stops there instead."""
    if response.status_code == 429:
        return True
    if response.status_code != 503:
        return False
    try:
        problem = response.json()
    except ValueError:
        return False
    return isinstance(problem, dict) and str(problem.get("type", "")).endswith("/overloaded")


def retry_after(response: httpx.Response, now: datetime | None = None) -> float:
    """The pause a 429 or 503 asks for (RFC 9110: seconds or an HTTP date), within bounds;
    one second when it names none or none that can be read."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        pause = float(value) if value.isascii() and value.isdigit() else (
            parsedate_to_datetime(value) - (now or datetime.now(UTC))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        pause = 1.0
    return min(max(pause, 0.0), LONGEST_PAUSE)


async def _send(api: Api, semaphore: asyncio.Semaphore, method: str, url: str,
                body: dict[str, Any], *, absent_ok_for: float = 0.0) -> httpx.Response:
    """One request, waiting out a busy server (429, 503 overloaded: its Retry-After,
    ``PATIENCE`` s in all) and (``absent_ok_for`` s) a case not opened yet.

    The semaphore bounds the requests in flight; it is not held while waiting.
    """
    deadline = time.monotonic() + absent_ok_for
    pause = 0.02
    waited = 0.0
    while True:
        async with semaphore:
            response = await api.client.request(method, url, json=body, headers=api.headers)
        if refused_unrun(response) and waited < PATIENCE:
            wait = min(max(retry_after(response), SHORTEST_PAUSE), PATIENCE - waited)
            waited += wait
            await asyncio.sleep(wait)
            continue
        if response.status_code == 404 and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
            continue
        if response.status_code >= 400:
            raise ImportFailed(f"{method} {url} -> {response.status_code}: {response.text}")
        return response


async def load(api: Api, quarter: Quarter, *, concurrency: int = 16,
               case_timeout: float = 60.0) -> Loaded:
    """Posts every record and its case's steps; sets the quarter's closure targets."""
    started = time.monotonic()
    semaphore = asyncio.Semaphore(concurrency)

    async def one(record: Record) -> str:
        created = await _send(api, semaphore, "POST", f"{api.intake}/v1/complaints",
                              record.body)
        case_id: str = created.json()["id"]
        for index, step in enumerate(record.steps):
            # The case opens from the complaint's event: wait for it before the first step.
            await _send(api, semaphore, "POST", f"{api.case}/v1/cases/{case_id}/transitions",
                        step.body(), absent_ok_for=case_timeout if index == 0 else 0.0)
        return case_id

    ids = await asyncio.gather(*(one(r) for r in quarter.records))
    await _send(api, semaphore, "PUT", f"{api.metrics}/v1/metrics/targets/{quarter.period}",
                quarter.target)
    return Loaded(len(quarter.records), quarter.transitions, time.monotonic() - started,
                  list(ids))
