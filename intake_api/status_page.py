"""The complainant's status page: plain HTML, Indonesian first with English beside it.

No script and nothing from another host: it must work on an old phone behind a slow connection,
and the access code typed into it must not reach anyone else.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from html import escape
from zoneinfo import ZoneInfo

from intake_api.schemas import PublicStatus

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

STATUS = {
    "received": ("Diterima", "Received"),
    "awaiting_completion": ("Menunggu kelengkapan berkas", "Awaiting completion"),
    "registered": ("Terdaftar", "Registered"),
    "in_examination": ("Dalam pemeriksaan", "Under examination"),
    "awaiting_agency": ("Menunggu tanggapan instansi", "Awaiting the agency's answer"),
    "agency_responded": ("Instansi telah menanggapi", "The agency has answered"),
    "corrective_action": ("Tindakan korektif", "Corrective action"),
    "closed": ("Selesai", "Closed"),
    "recorded": ("Tercatat", "Recorded"),
}
WORDS = {
    "verification": ("Verifikasi", "Verification"),
    "examination": ("Pemeriksaan", "Examination"),
    "resolution": ("Resolusi", "Resolution"),
    "resolved": ("Diselesaikan", "Resolved"),
    "explained": ("Dijelaskan", "Explained"),
    "disputed": ("Dibantah", "Disputed"),
    "incomplete": ("Berkas tidak lengkap", "Incomplete"),
    "not_reported_to_agency": ("Belum dilaporkan ke instansi", "Not reported to the agency"),
    "out_of_jurisdiction": ("Di luar kewenangan", "Outside jurisdiction"),
    "in_court": ("Sedang diperiksa pengadilan", "Before a court"),
    "expired": ("Lewat waktu", "Too old"),
    "duplicate": ("Laporan ganda", "Duplicate"),
    "already_resolved": ("Sudah diselesaikan", "Already resolved"),
    "resolved_by_agency": ("Diselesaikan oleh instansi", "Resolved by the agency"),
    "no_maladministration": ("Tidak ditemukan maladministrasi", "No maladministration"),
    "examination_stopped": ("Pemeriksaan dihentikan", "Examination stopped"),
    "corrective_action_completed": ("Tindakan korektif dilaksanakan",
                                    "Corrective action completed"),
    "recommendation_issued": ("Rekomendasi diterbitkan", "Recommendation issued"),
    "transferred": ("Dilimpahkan", "Transferred"),
    "withdrawn": ("Dicabut", "Withdrawn"),
}

STYLE = """
body{font-family:system-ui,sans-serif;max-width:36rem;margin:1rem auto;padding:0 1rem;
line-height:1.5;color:#1a1a1a}
h1{font-size:1.4rem}.en{color:#555;font-weight:normal}label{display:block;margin-top:.8rem}
input{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}
button{margin-top:1rem;font-size:1rem;padding:.5rem 1.2rem}
table{border-collapse:collapse;margin-top:1rem;width:100%}
th,td{text-align:left;padding:.3rem;border-bottom:1px solid #ddd;vertical-align:top}
.notice{padding:.6rem;margin-top:1rem;border:1px solid #c33;background:#fdecea}
"""


def _both(indonesian: str, english: str) -> str:
    return f'{escape(indonesian)} <span class="en" lang="en">/ {escape(english)}</span>'


def _word(value: str | None, table: dict[str, tuple[str, str]]) -> str:
    if value is None:
        return "&ndash;"
    pair = table.get(value)
    return _both(*pair) if pair else escape(value)


def _time(value: datetime | None, zone: ZoneInfo, *, deadline: bool = False) -> str:
    if value is None:
        return "&ndash;"
    local = value.astimezone(zone)
    if deadline and local.time() == time():
        # Due dates end a day: "24 March, 24:00" reads right where "25 March, 00:00" misleads.
        return escape(f"{local - timedelta(days=1):%Y-%m-%d} 24:00 ({local.tzname()})")
    return escape(f"{local:%Y-%m-%d %H:%M} ({local.tzname()})")


def _answer(status: PublicStatus, zone: ZoneInfo) -> str:
    rows = [
        (("Nomor pelacakan", "Tracking number"), escape(status.tracking_number)),
        (("Status", "Status"), _word(status.status, STATUS)),
        (("Diterima", "Received"), _time(status.received_at, zone)),
        (("Diperbarui", "Updated"), _time(status.updated_at, zone)),
        (("Batas waktu", "Due"), _time(status.due_at, zone, deadline=True)),
        (("Tahap penutupan", "Closed at stage"), _word(status.closure_stage, WORDS)),
        (("Alasan penutupan", "Reason for closing"), _word(status.closure_reason, WORDS)),
        (("Tanggapan instansi", "The agency's answer"), _word(status.resolution, WORDS)),
    ]
    cells = "".join(f"<tr><th scope=\"row\">{_both(*label)}</th><td>{value}</td></tr>"
                    for label, value in rows)
    return f'<table id="answer">{cells}</table>'


def render(*, zone: ZoneInfo, tracking_number: str = "", answer: PublicStatus | None = None,
           notice: tuple[str, str] | None = None) -> str:
    """The form, with the answer or a notice (in both languages) below it."""
    result = ""
    if notice is not None:
        result = f'<p class="notice" id="notice" role="alert">{_both(*notice)}</p>'
    elif answer is not None:
        result = _answer(answer, zone)
    return f"""<!DOCTYPE html>
<html lang="id">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Status Pengaduan / Complaint status &ndash; Ombudsman RI</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{_both("Status pengaduan", "Complaint status")}</h1>
<p>{_both("Masukkan nomor pelacakan dan kode akses yang Anda terima saat pengaduan dicatat.",
          "Enter the tracking number and the access code you were given when the complaint "
          "was recorded.")}</p>
<form method="post" action="/status">
<label for="tracking_number">{_both("Nomor pelacakan", "Tracking number")}</label>
<input id="tracking_number" name="tracking_number" required maxlength="32"
 placeholder="ADU-2022-000193" value="{escape(tracking_number)}" autocomplete="off">
<label for="access_code">{_both("Kode akses", "Access code")}</label>
<input id="access_code" name="access_code" required maxlength="64" autocomplete="off"
 placeholder="XXXX-XXXX-XXXX" spellcheck="false">
<button type="submit">{_both("Lihat status", "Show status")}</button>
</form>
{result}
</body>
</html>
"""
