"""Staff-only endpoints: bulk import of saved methods, run by a Celery task.

    POST /wallet/api/staff/imports/         multipart: file, account, format (csv|jsonl), dry_run
         → 202 {"id": "imp_…", "status": "queued", "status_url": "…"}
    GET  /wallet/api/staff/imports/imp_…/   → status, progress (0–1), report (created, updated,
                                              skipped, failed, errors with line numbers)
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import ImportJob
from ..services import importing
from .errors import error_response, exception_handler


def _job_body(request, job: ImportJob) -> dict:
    progress = 1.0 if job.status == ImportJob.DONE else (
        round(job.processed_bytes / job.total_bytes, 4) if job.total_bytes else 0.0)
    return {
        "id": job.uid, "account": job.account, "format": job.format, "dry_run": job.dry_run, "status": job.status,
        "progress": progress, "report": job.report or None, "error": job.last_error or None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "status_url": request.build_absolute_uri(
            reverse(f"{request.resolver_match.namespace}:staff-import", kwargs={"uid": job.uid})),
    }


class StaffAPIView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAdminUser]
    renderer_classes = [JSONRenderer]
    schema = None  # staff tooling: not part of the shopper API's schema

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        # Refuse a non-staff caller before anything reads the body: DRF's CSRF check reads
        # ``request.POST``, which would parse (and spool) a stranger's upload first — and answer
        # 415 instead of 403 to a JSON body.  The session user is the one SessionAuthentication uses.
        user = getattr(request._request, "user", None)
        if user is None or not user.is_authenticated:
            raise exceptions.NotAuthenticated()
        if not (user.is_active and user.is_staff):
            raise exceptions.PermissionDenied()
        super().initial(request, *args, **kwargs)


class ImportJobListView(StaffAPIView):
    parser_classes = [MultiPartParser]

    def post(self, request, *args, **kwargs):
        upload = request.FILES.get("file")
        if upload is None:
            return error_response("invalid", "Send the file as the multipart field “file”.", 400)
        account = str(request.data.get("account") or "")
        fmt = str(request.data.get("format") or importing.guess_format(upload.name or ""))
        dry_run = str(request.data.get("dry_run") or "").lower() in ("1", "true", "yes")
        try:
            job = importing.create_job(upload, account, fmt, dry_run=dry_run, user=request.user)
        except ImproperlyConfigured:
            return error_response("invalid", f"Unknown account {account!r}.", 400, {"account": ["unknown"]})
        except (ValueError, UnicodeDecodeError) as exc:
            message = "The file is not UTF-8 text." if isinstance(exc, UnicodeDecodeError) else str(exc)
            return error_response("invalid", message, 400)
        from ..tasks import enqueue_import_job

        enqueue_import_job(job.pk)
        job.refresh_from_db()
        return Response(_job_body(request, job), status=202)


class ImportJobDetailView(StaffAPIView):
    def get(self, request, uid, *args, **kwargs):
        job = ImportJob.objects.filter(uid=uid).first()
        if job is None:
            return error_response("not_found", "Not found.", 404)
        return Response(_job_body(request, job))
