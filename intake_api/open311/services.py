"""The Open311 service list: one service per substance, named in Indonesian."""

from __future__ import annotations

from dataclasses import dataclass

from shared.vocabulary import Substance


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    group: str
    keywords: str


_INFRASTRUCTURE = "Infrastruktur dan utilitas"
_GOVERNMENT = "Administrasi pemerintahan"
_LAW = "Hukum dan hak sipil"
_SOCIAL = "Pelayanan sosial"

_CATALOGUE: dict[Substance, tuple[str, str, str, str]] = {
    Substance.electricity: ("Listrik", "Pelayanan listrik: pemadaman, sambungan, tagihan.",
                            _INFRASTRUCTURE, "listrik, PLN, pemadaman"),
    Substance.water: ("Air bersih", "Pelayanan air minum dan air bersih (PDAM).",
                      _INFRASTRUCTURE, "air, PDAM"),
    Substance.transport_infrastructure: (
        "Perhubungan dan infrastruktur", "Jalan, jembatan, angkutan umum, pelabuhan.",
        _INFRASTRUCTURE, "jalan, jembatan, transportasi"),
    Substance.land: ("Pertanahan", "Sertifikat dan pendaftaran tanah.", _GOVERNMENT,
                     "tanah, sertifikat, BPN"),
    Substance.population_administration: (
        "Administrasi kependudukan", "KTP, kartu keluarga, akta.", _GOVERNMENT,
        "KTP, KK, akta, dukcapil"),
    Substance.local_government: ("Pemerintahan daerah", "Pelayanan pemerintah daerah.",
                                 _GOVERNMENT, "pemda, kelurahan, desa"),
    Substance.civil_service: ("Kepegawaian", "Aparatur sipil negara dan kepegawaian.",
                              _GOVERNMENT, "ASN, PNS"),
    Substance.police: ("Kepolisian", "Pelayanan kepolisian.", _LAW, "polisi, SKCK"),
    Substance.civil_political_rights: ("Hak sipil dan politik", "Hak sipil dan politik.", _LAW,
                                       "hak, sipil, politik"),
    Substance.education: ("Pendidikan", "Sekolah, penerimaan siswa, bantuan pendidikan.",
                          _SOCIAL, "sekolah, PPDB"),
    Substance.health: ("Kesehatan", "Rumah sakit, puskesmas, layanan kesehatan.", _SOCIAL,
                       "rumah sakit, puskesmas"),
    Substance.social_security: ("Jaminan sosial", "BPJS dan bantuan sosial.", _SOCIAL,
                                "BPJS, bansos"),
    Substance.other: ("Lainnya", "Pelayanan publik lainnya.", "Lainnya", "lainnya"),
}

SERVICES: tuple[Service, ...] = tuple(
    Service(substance.value, *_CATALOGUE[substance]) for substance in Substance)
BY_CODE = {service.code: service for service in SERVICES}
