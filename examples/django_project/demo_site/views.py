"""Views of the Django example: a function view, a class-based view with a per-method limit,
an async view, and a health check that is exempt."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from py_rate_guard.adapters.django import rate_limit


@rate_limit("5/minute")
def sensitive_data(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"data": "..."})


class Items(View):
    def get(self, request: HttpRequest, item_id: int) -> HttpResponse:
        return JsonResponse({"id": item_id})

    @rate_limit("2/minute", key="header:X-Api-Key")  # per API key, else per address
    def post(self, request: HttpRequest, item_id: int) -> HttpResponse:
        return JsonResponse({"id": item_id, "updated": True})


@rate_limit("10/minute")
async def report(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"report": "ready"})


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")
