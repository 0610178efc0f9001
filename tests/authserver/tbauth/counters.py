"""Request counters for the tests: real requests, counted on their way through."""

import json
import threading

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

_lock = threading.Lock()
_GRANTS = ("password", "refresh_token", "client_credentials")


def _zero():
    return {
        "token": {g: 0 for g in _GRANTS},
        "token_status": {"200": 0, "400": 0, "401": 0},
        "revoke": 0,
    }


_counters = _zero()


def snapshot():
    with _lock:
        return json.loads(json.dumps(_counters))


def reset():
    global _counters
    with _lock:
        _counters = _zero()


class CountersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.path == "/o/token/":
            # Read the grant type before the view: the form is parsed once and cached.
            grant = request.POST.get("grant_type", "") or "(none)"
            response = self.get_response(request)
            status = str(response.status_code)
            with _lock:
                _counters["token"][grant] = _counters["token"].get(grant, 0) + 1
                _counters["token_status"][status] = _counters["token_status"].get(status, 0) + 1
            return response
        if request.method == "POST" and request.path == "/o/revoke_token/":
            response = self.get_response(request)
            with _lock:
                _counters["revoke"] += 1
            return response
        return self.get_response(request)


def counters_view(request):
    if request.method != "GET":
        return HttpResponse(status=405)
    return JsonResponse(snapshot())


@csrf_exempt
def reset_view(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    reset()
    return JsonResponse(snapshot())
