"""The API's route class: the text rule on every route, and a precompiled dependency plan.

Every domain router is made by :func:`api_router`, so every HTTP route is a :class:`Route`:

- It runs the text rule (``validation.reject_control_characters``) on its path and query
  parameters, first of all its dependencies. That rule used to be an app-wide dependency;
  it is the route's own now because a :class:`Route` must see its whole dependency tree
  (``app._App.include_router`` refuses a router with routes of another class, or
  dependencies added at inclusion).
- When its tree is made only of what the plan below solves exactly as FastAPI would, it
  answers through that plan instead of FastAPI's ``solve_dependencies``. FastAPI's solver
  is general, and pays for it on every request and every node of the tree: it looks up
  overrides, asks whether each callable is a generator, builds cache keys, and parses
  path, query, header and cookie parameters (four calls per node, empty or not). For a
  fast read (the text rule, the reader, its bearer scheme, paging, the handler) that was
  about a third of the request's CPU, more than the query. The plan is compiled once: per
  node, only the parameter kinds it has, its callable, and where its value goes.

What the plan solves: ``async def`` dependencies (or objects with an ``async def
__call__``, as FastAPI's security schemes are), with path, query and header parameters,
the ``Request`` or ``HTTPConnection``, and sub-dependencies of the same kind; and an
``async def`` handler whose return annotation is a ``Response`` (it is sent as is, so
there is no response model to validate). Anything else (a yielding dependency such as
the request's session, a body, a plain ``def`` run in the thread pool, a handler
returning a model) keeps FastAPI's own handler, as do all routes while a test overrides
dependencies. Scalar path and query parameters are validated by their FastAPI fields
(``_Param``), others by FastAPI's own ``request_params_to_args``, so values, defaults
and validation errors (400 via ``exception_handlers``) are FastAPI's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import UnionType
from typing import Any, Literal, Union, cast, get_args, get_origin

from fastapi import APIRouter, Depends, Request, Response, params
from fastapi._compat import ModelField, Undefined, get_missing_field_error
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette._utils import get_route_path  # what Starlette matches routes against
from starlette.routing import Match
from starlette.types import Scope

from spark_trainer.validation import reject_control_characters

# The text rule as a dependency; a WebSocket route lists it itself (``check_router``).
TEXT_RULE = Depends(reject_control_characters)


_SCALARS = (int, float, str, bool)


def _is_scalar(annotation: Any) -> bool:
    """``int``, ``float``, ``str``, ``bool``, an enum or a ``Literal``, or one of them or None."""
    if get_origin(annotation) in (Union, UnionType):
        return all(a is type(None) or _is_scalar(a) for a in get_args(annotation))
    if get_origin(annotation) is Literal:
        return True
    return annotation in _SCALARS or (inspect.isclass(annotation) and issubclass(annotation, Enum))


@dataclass(frozen=True, slots=True)
class _Param:
    """A scalar path or query parameter, with what FastAPI works out again on each request
    (its aliases, whether its annotation is a sequence or a model: 12 % of a jobs list
    request's CPU in a cProfile) worked out once."""

    field: ModelField
    loc: tuple[str, str]
    required: bool
    default: Any

    @classmethod
    def of(cls, field: ModelField) -> _Param | None:
        """``field`` as a :class:`_Param`, or None where FastAPI's own parsing must stay:
        a sequence, a model, an alias other than its name, a default to copy or validate."""
        info = field.field_info
        if (
            not isinstance(info, params.Path | params.Query)
            or not _is_scalar(info.annotation)
            or info.validation_alias is not None
            or field.config
            or info.validate_default
            or not isinstance(field.default, (*_SCALARS, Enum, type(None), type(Undefined)))
        ):
            return None
        return cls(field, (info.in_.value, field.alias), info.is_required(), field.default)


def _parse(
    fields: Sequence[_Param], received: Mapping[str, Any], values: dict[str, Any], errors: list[Any]
) -> None:
    """As ``request_params_to_args`` does for scalar parameters: a value absent or None
    takes the default, or is missing when required; a present one is validated."""
    for param in fields:
        value = received.get(param.loc[1])
        if value is None:
            if param.required:
                errors.append(get_missing_field_error(loc=param.loc))
            else:
                values[param.field.name] = param.default
            continue
        parsed, failed = param.field.validate(value, values, loc=param.loc)
        if failed:
            errors.extend(failed)
        else:
            values[param.field.name] = parsed


def _params(fields: Sequence[ModelField]) -> tuple[_Param, ...] | tuple[ModelField, ...]:
    compiled = tuple(_Param.of(field) for field in fields)
    return cast(tuple[_Param, ...], compiled) if all(compiled) else tuple(fields)


@dataclass(frozen=True, slots=True)
class _Node:
    """One dependency (or the handler) of a route, with what solving it needs."""

    call: Callable[..., Awaitable[Any]]
    name: str | None
    cached: bool
    # Each source's parameters as _Params when all of them are scalar, else as FastAPI's
    # fields for ``request_params_to_args`` (so errors keep FastAPI's order).
    path: Sequence[_Param] | Sequence[ModelField]
    query: Sequence[_Param] | Sequence[ModelField]
    headers: Sequence[ModelField]
    connection_names: tuple[str, ...]
    children: tuple[_Node, ...]

    async def solve(
        self, request: Request, cache: dict[Any, Any], errors: list[Any]
    ) -> dict[str, Any]:
        """The keyword arguments of ``call``; failures are appended to ``errors``.

        As FastAPI does: a dependency whose own arguments failed is not called, and every
        node's parameters are still parsed, so one answer lists every invalid parameter.
        """
        values: dict[str, Any] = {}
        for child in self.children:
            found = len(errors)
            arguments = await child.solve(request, cache, errors)
            if len(errors) != found:
                continue
            if child.cached and child.call in cache:
                solved = cache[child.call]
            else:
                solved = await child.call(**arguments)
                if child.cached:
                    cache[child.call] = solved
            if child.name is not None:
                values[child.name] = solved
        for fields, received in (
            (self.path, request.path_params),
            (self.query, request.query_params),
            (self.headers, request.headers),
        ):
            if not fields:
                continue
            if isinstance(fields[0], _Param):
                _parse(cast(Sequence[_Param], fields), received, values, errors)
            else:
                parsed, failed = request_params_to_args(
                    cast(Sequence[ModelField], fields), received
                )
                values.update(parsed)
                errors.extend(failed)
        for name in self.connection_names:
            values[name] = request
        return values


def _is_async(call: object) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (a security scheme)."""
    if not callable(call) or inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return False
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(call.__call__)


def _compile(dependant: Dependant) -> _Node | None:
    """``dependant`` as a plan node, or None when the plan cannot solve it as FastAPI does."""
    call = dependant.call
    if (
        call is None
        or not _is_async(call)
        or dependant.body_params
        or dependant.cookie_params
        or dependant.websocket_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.concurrency is not None
    ):
        return None
    children = []
    for sub in dependant.dependencies:
        child = _compile(sub)
        if child is None:
            return None
        children.append(child)
    return _Node(
        call=call,
        name=dependant.name,
        cached=dependant.use_cache,
        path=_params(dependant.path_params),
        query=_params(dependant.query_params),
        headers=tuple(dependant.header_params),
        connection_names=tuple(
            name
            for name in (dependant.request_param_name, dependant.http_connection_param_name)
            if name is not None
        ),
        children=tuple(children),
    )


def _returns_response(call: Callable[..., Any]) -> bool:
    try:
        annotation = get_typed_return_annotation(call)
    except NameError:  # an annotation that does not resolve: leave it to FastAPI
        return False
    return inspect.isclass(annotation) and issubclass(annotation, Response)


class Route(APIRoute):
    """An ``APIRoute`` with the text rule first and, where it can, a precompiled plan."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        dependencies: Sequence[DependsParam] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, endpoint, dependencies=[TEXT_RULE, *(dependencies or ())], **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        root = _compile(self.dependant)
        if root is None or not _returns_response(self.dependant.call or root.call):
            return standard

        async def planned(request: Request) -> Response:
            if request.app.dependency_overrides:
                return await standard(request)
            errors: list[Any] = []
            values = await root.solve(request, {}, errors)
            if errors:
                raise RequestValidationError(errors)
            response: Response = await root.call(**values)
            return response

        return planned


class DomainRouter(APIRouter):
    """A domain's router, which declines a path that none of its routes can match without
    trying them.

    The app tries its routers in turn, and FastAPI's included router matches a request by
    trying each of its routes (twice for the router that wins: once to choose it, once to
    handle). A route matches only paths that start with its path's literal part (up to
    its first parameter), so a path that starts with none of them can match none of its
    routes. That is the router's prefix where it has one; routers without one (health,
    streams, GPUs) were otherwise tried route by route on every request.
    """

    _literal_parts: tuple[str, ...] = ()
    _literal_parts_of: int = -1  # how many routes the parts were worked out from

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(self._literal_prefixes()):
            return Match.NONE, {}
        return super().matches(scope)

    def _literal_prefixes(self) -> tuple[str, ...]:
        # Routes are added after the router is made (by the decorators): worked out again
        # when their number changes.
        if self._literal_parts_of != len(self.routes):
            self._literal_parts = tuple(
                {getattr(route, "path", "").split("{", 1)[0] for route in self.routes}
            )
            self._literal_parts_of = len(self.routes)
        return self._literal_parts


def api_router(*, prefix: str = "", tags: list[str]) -> APIRouter:
    """A domain's router: every HTTP route on it is a :class:`Route`."""
    return DomainRouter(prefix=prefix, tags=list(tags), route_class=Route)


def check_router(router: APIRouter) -> None:
    """Raises unless every route of ``router`` runs the text rule: its HTTP routes are
    :class:`Route` s, and each WebSocket route lists the rule among its dependencies."""
    for route in router.routes:
        if isinstance(route, APIRoute) and not isinstance(route, Route):
            raise TypeError(f"{route.path}: make its router with routing.api_router")
        if isinstance(route, APIWebSocketRoute) and TEXT_RULE not in route.dependencies:
            raise TypeError(f"{route.path}: a WebSocket route needs routing.TEXT_RULE")
