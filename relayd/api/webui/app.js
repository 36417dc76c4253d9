// relayd dashboard: plain JavaScript, no framework and no build step.
//
// Pages are hash routes (#/, #/entrypoints, #/http/routers, #/http/routers/<name>,
// #/tcp/services?search=x&status=disabled, ...). Every page reads relayd's REST
// API with relative URLs (../api/...), so it works wherever the dashboard is
// mounted. The current page is fetched again every POLL_MS and redrawn only when
// the answer changed; the search box, status filter, open sections and scroll
// position are left alone.
"use strict";

(function () {
  const API = "../api/";
  const POLL_MS = 2000;
  const PER_PAGE = 500;
  const MAX_PAGES = 100;
  const STATUSES = ["enabled", "warning", "disabled"];

  // ---------------------------------------------------------------- DOM helpers

  // h("a", {href: "#/", class: "x"}, "text", child, [more, children])
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function badge(status) {
    const value = status || "unknown";
    return h("span", {class: "badge badge-" + value.toLowerCase(), "data-status": value}, value);
  }

  function joinLinks(items, linkOf) {
    const out = [];
    (items || []).forEach(function (item, index) {
      if (index) out.push(", ");
      out.push(linkOf(item));
    });
    return out.length ? out : [h("span", {class: "muted"}, "—")];
  }

  function codeOrDash(value) {
    return value === undefined || value === null || value === "" ? h("span", {class: "muted"}, "—") : h("code", {}, value);
  }

  // ---------------------------------------------------------------- names and links

  function providerOf(name) {
    const at = name.lastIndexOf("@");
    return at < 0 ? "" : name.slice(at + 1);
  }

  // Routers name their service and middlewares as written; without a provider
  // they mean the router's own provider.
  function qualify(name, provider) {
    if (!name || name.indexOf("@") >= 0 || !provider) return name;
    return name + "@" + provider;
  }

  function objectHref(protocol, kind, name) {
    return "#/" + protocol + "/" + kind + "/" + encodeURIComponent(name);
  }

  // A name that may break before its "@provider" when space is short.
  function breakableName(name) {
    const at = name.lastIndexOf("@");
    return at <= 0 ? name : [name.slice(0, at), h("wbr"), name.slice(at)];
  }

  function objectLink(protocol, kind, name) {
    return h("a", {href: objectHref(protocol, kind, name)}, breakableName(name));
  }

  // ---------------------------------------------------------------- API access

  let generation = null;

  function apiError(response, body) {
    let message = response.status + " " + response.statusText;
    try {
      const parsed = JSON.parse(body);
      if (parsed && parsed.message) message = parsed.message;
    } catch (e) {
      if (body) message += ": " + body.trim().slice(0, 200);
    }
    const error = new Error(message);
    error.status = response.status;
    return error;
  }

  async function request(path) {
    const response = await fetch(API + path, {cache: "no-store", headers: {Accept: "application/json"}});
    const body = await response.text();
    const seen = response.headers.get("X-Relayd-Generation");
    if (seen !== null) generation = seen;
    if (!response.ok) throw apiError(response, body);
    return {response: response, data: body ? JSON.parse(body) : null};
  }

  async function getOne(path) {
    return (await request(path)).data;
  }

  // Every page of a list (X-Next-Page names the next one; a number not above
  // the current page means there is none).
  async function getList(path) {
    let items = [];
    let page = 1;
    for (let count = 0; count < MAX_PAGES; count++) {
      const sep = path.indexOf("?") >= 0 ? "&" : "?";
      const answer = await request(path + sep + "per_page=" + PER_PAGE + "&page=" + page);
      items = items.concat(Array.isArray(answer.data) ? answer.data : []);
      const next = parseInt(answer.response.headers.get("X-Next-Page") || "1", 10);
      if (!(next > page)) break;
      page = next;
    }
    return items;
  }

  // ---------------------------------------------------------------- routes

  function parseRoute() {
    let hash = location.hash.replace(/^#/, "");
    if (!hash.startsWith("/")) hash = "/" + hash;
    const q = hash.indexOf("?");
    const path = q >= 0 ? hash.slice(0, q) : hash;
    const params = new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "");
    const parts = path.split("/").filter(function (p) { return p !== ""; });
    const route = {
      page: "overview",
      protocol: null,
      kind: null,
      name: null,
      search: params.get("search") || "",
      status: params.get("status") || "",
    };
    if (parts[0] === "entrypoints") {
      route.page = "entrypoints";
    } else if (["http", "tcp", "udp"].indexOf(parts[0]) >= 0 && KINDS[parts[0]][parts[1]]) {
      route.protocol = parts[0];
      route.kind = parts[1];
      if (parts.length > 2) {
        route.page = "detail";
        route.name = decodeURIComponent(parts.slice(2).join("/"));
      } else {
        route.page = "list";
      }
    } else if (parts.length) {
      route.page = "missing";
    }
    if (STATUSES.indexOf(route.status) < 0) route.status = "";
    return route;
  }

  function routeKey(route) {
    return [route.page, route.protocol, route.kind, route.name].join("|");
  }

  // Keep the search and filter in the address without a new history entry
  // (and so without a hashchange).
  function storeFilter(route) {
    const params = new URLSearchParams();
    if (route.search) params.set("search", route.search);
    if (route.status) params.set("status", route.status);
    const query = params.toString();
    const base = "#/" + route.protocol + "/" + route.kind;
    history.replaceState(null, "", base + (query ? "?" + query : ""));
  }

  // ---------------------------------------------------------------- list pages

  function serversOf(service) {
    const lb = service.loadBalancer || {};
    return (lb.servers || []).map(function (s) { return s.url || s.address || ""; });
  }

  function serverSummary(service) {
    const status = service.serverStatus || {};
    const servers = serversOf(service);
    const urls = servers.length ? servers : Object.keys(status);
    if (!urls.length) return h("span", {class: "muted"}, "—");
    let up = 0;
    let down = 0;
    urls.forEach(function (u) {
      if (status[u] === "DOWN") down++;
      else if (status[u] === "UP") up++;
    });
    const parts = [h("span", {class: "count"}, String(urls.length))];
    if (up) parts.push(" ", h("span", {class: "server server-up"}, up + " UP"));
    if (down) parts.push(" ", h("span", {class: "server server-down"}, down + " DOWN"));
    return parts;
  }

  function tlsSummary(router) {
    if (!router.tls) return h("span", {class: "muted"}, "—");
    const bits = [];
    if (router.tls.passthrough) bits.push("passthrough");
    if (router.tls.certResolver) bits.push("resolver " + router.tls.certResolver);
    if (router.tls.options && router.tls.options !== "default") bits.push("options " + router.tls.options);
    return h("span", {class: "tls", title: JSON.stringify(router.tls)}, "TLS" + (bits.length ? " (" + bits.join(", ") + ")" : ""));
  }

  // Internal routers sit at the top of Go's int64 (JSON numbers lose those
  // digits, hence priorityStr): shown as "max" or "max−N".
  const MAX_PRIORITY = "9223372036854775807";

  function priorityCell(r) {
    const text = r.priorityStr || (r.priority !== undefined ? String(r.priority) : "");
    if (!text) return h("span", {class: "muted"}, "—");
    if (text.length === MAX_PRIORITY.length && typeof BigInt === "function") {
      const below = BigInt(MAX_PRIORITY) - BigInt(text);
      if (below >= 0n && below < 1000n) {
        return h("span", {title: text}, below === 0n ? "max" : "max−" + below.toString());
      }
    }
    return text;
  }

  function routersColumns(protocol) {
    const columns = [
      ["Status", function (r) { return badge(r.status); }],
      ["Name", function (r) { return objectLink(protocol, "routers", r.name); }, "name"],
    ];
    if (protocol !== "udp") {
      columns.push(["Rule", function (r) { return codeOrDash(r.rule); }, "rule"]);
    }
    columns.push(["Entrypoints", function (r) { return (r.using || r.entryPoints || []).join(", ") || "—"; }]);
    if (protocol !== "udp") {
      columns.push(["Priority", priorityCell, "num"]);
    }
    if (protocol !== "udp") {
      columns.push(["Middlewares", function (r) {
        return joinLinks(r.middlewares, function (m) { return objectLink(protocol, "middlewares", qualify(m, r.provider)); });
      }]);
    }
    columns.push(["Service", function (r) {
      return r.service ? objectLink(protocol, "services", qualify(r.service, r.provider)) : h("span", {class: "muted"}, "—");
    }]);
    if (protocol !== "udp") columns.push(["TLS", tlsSummary]);
    columns.push(["Provider", function (r) { return h("span", {class: "provider"}, r.provider || providerOf(r.name)); }]);
    return columns;
  }

  function servicesColumns(protocol) {
    return [
      ["Status", function (s) { return badge(s.status); }],
      ["Name", function (s) { return objectLink(protocol, "services", s.name); }, "name"],
      ["Type", function (s) { return s.type || "—"; }],
      ["Servers", serverSummary],
      ["Used by", function (s) { return joinLinks(s.usedBy, function (r) { return objectLink(protocol, "routers", r); }); }],
      ["Provider", function (s) { return h("span", {class: "provider"}, s.provider || providerOf(s.name)); }],
    ];
  }

  function middlewaresColumns(protocol) {
    return [
      ["Status", function (m) { return badge(m.status); }],
      ["Name", function (m) { return objectLink(protocol, "middlewares", m.name); }, "name"],
      ["Type", function (m) { return m.type || "—"; }],
      ["Used by", function (m) {
        return joinLinks(m.usedBy, function (r) { return objectLink(protocol, "routers", r); });
      }],
      ["Provider", function (m) { return h("span", {class: "provider"}, m.provider || providerOf(m.name)); }],
    ];
  }

  const KINDS = {
    http: {routers: routersColumns, services: servicesColumns, middlewares: middlewaresColumns},
    tcp: {routers: routersColumns, services: servicesColumns, middlewares: middlewaresColumns},
    udp: {routers: routersColumns, services: servicesColumns},
  };

  const TITLES = {routers: "Routers", services: "Services", middlewares: "Middlewares"};

  function searchText(item) {
    const values = [item.name, item.provider, item.rule, item.service, item.type, item.status];
    (item.entryPoints || []).forEach(function (e) { values.push(e); });
    (item.middlewares || []).forEach(function (m) { values.push(m); });
    serversOf(item).forEach(function (s) { values.push(s); });
    (item.error || []).forEach(function (e) { values.push(e); });
    return values.filter(Boolean).join("\n").toLowerCase();
  }

  function filterItems(items, route) {
    const needle = route.search.trim().toLowerCase();
    return items.filter(function (item) {
      if (route.status && (item.status || "").toLowerCase() !== route.status) return false;
      return !needle || searchText(item).indexOf(needle) >= 0;
    });
  }

  function buildListPage(view, route) {
    const title = route.protocol.toUpperCase() + " " + TITLES[route.kind];
    const search = h("input", {
      type: "search", id: "search", placeholder: "Search name, rule, service, provider…",
      value: route.search, "aria-label": "Search", autocomplete: "off",
    });
    const status = h("select", {id: "status-filter", "aria-label": "Status"},
      h("option", {value: ""}, "All statuses"),
      STATUSES.map(function (s) { return h("option", {value: s}, s); }));
    status.value = route.status;
    const counter = h("span", {class: "counter", id: "counter"});
    const content = h("div", {id: "content"});
    function changed() {
      route.search = search.value;
      route.status = status.value;
      storeFilter(route);
      if (view.items) drawList(view, route);
    }
    search.addEventListener("input", changed);
    status.addEventListener("change", changed);
    view.content = content;
    view.counter = counter;
    return [h("h1", {}, title), h("div", {class: "toolbar"}, search, status, counter), content];
  }

  async function loadList(view, route) {
    view.items = await getList(route.protocol + "/" + route.kind);
    return view.items;
  }

  function drawList(view, route) {
    const items = view.items.slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
    const shown = filterItems(items, route);
    view.counter.textContent = shown.length === items.length ? items.length + " total" : shown.length + " of " + items.length;
    const columns = KINDS[route.protocol][route.kind](route.protocol);
    const table = h("table", {class: "objects", "data-kind": route.protocol + "-" + route.kind},
      h("thead", {}, h("tr", {}, columns.map(function (c) { return h("th", {class: c[2] || ""}, c[0]); }))));
    const body = h("tbody");
    shown.forEach(function (item) {
      const row = h("tr", {class: "object status-" + (item.status || "unknown"), "data-name": item.name},
        columns.map(function (c) { return h("td", {class: c[2] || ""}, c[1](item)); }));
      body.appendChild(row);
      if (item.error && item.error.length) {
        body.appendChild(h("tr", {class: "errors-row", "data-errors-for": item.name},
          h("td", {colspan: columns.length},
            item.error.map(function (e) { return h("div", {class: "error"}, e); }))));
      }
    });
    table.appendChild(body);
    clear(view.content);
    if (!shown.length) {
      view.content.appendChild(h("p", {class: "empty"}, items.length ? "Nothing matches the search and filter." : "None."));
    } else {
      view.content.appendChild(h("div", {class: "table-wrap"}, table));
    }
  }

  // ---------------------------------------------------------------- detail pages

  function field(label, value) {
    return [h("dt", {}, label), h("dd", {}, value)];
  }

  function errorsBox(item) {
    if (!item.error || !item.error.length) return null;
    return h("div", {class: "errors-box"},
      h("h2", {}, item.error.length === 1 ? "Error" : "Errors"),
      item.error.map(function (e) { return h("div", {class: "error"}, e); }));
  }

  function rawJSON(item) {
    return h("details", {class: "raw", "data-keep": "raw"}, h("summary", {}, "Raw JSON"),
      h("pre", {}, JSON.stringify(item, null, 2)));
  }

  function routerDetail(protocol, r) {
    const fields = [];
    if (r.rule !== undefined) fields.push(field("Rule", codeOrDash(r.rule)));
    if (r.ruleSyntax) fields.push(field("Rule syntax", r.ruleSyntax));
    if (r.priority !== undefined || r.priorityStr) fields.push(field("Priority", priorityCell(r)));
    fields.push(field("Entrypoints", (r.using || r.entryPoints || []).join(", ") || "—"));
    if (protocol !== "udp") {
      fields.push(field("Middlewares", joinLinks(r.middlewares, function (m) {
        return objectLink(protocol, "middlewares", qualify(m, r.provider));
      })));
    }
    fields.push(field("Service", r.service ? objectLink(protocol, "services", qualify(r.service, r.provider)) : "—"));
    if (protocol !== "udp") {
      fields.push(field("TLS", r.tls ? h("pre", {class: "inline"}, JSON.stringify(r.tls, null, 2)) : "—"));
    }
    if (r.observability) fields.push(field("Observability", h("pre", {class: "inline"}, JSON.stringify(r.observability, null, 2))));
    fields.push(field("Provider", r.provider || providerOf(r.name)));
    return [errorsBox(r), h("dl", {class: "fields"}, fields)];
  }

  function serviceDetail(protocol, s) {
    const fields = [field("Type", s.type || "—")];
    const status = s.serverStatus || {};
    const parts = [errorsBox(s)];
    fields.push(field("Used by", joinLinks(s.usedBy, function (r) { return objectLink(protocol, "routers", r); })));
    fields.push(field("Provider", s.provider || providerOf(s.name)));
    const lb = s.loadBalancer;
    if (lb) {
      if (lb.healthCheck) fields.push(field("Health check", h("pre", {class: "inline"}, JSON.stringify(lb.healthCheck, null, 2))));
      if (lb.sticky) fields.push(field("Sticky", h("pre", {class: "inline"}, JSON.stringify(lb.sticky, null, 2))));
      if (lb.passHostHeader !== undefined) fields.push(field("Pass Host header", String(lb.passHostHeader)));
    }
    const children = [];
    if (s.weighted) {
      (s.weighted.services || []).forEach(function (c) {
        children.push([qualify(c.name, s.provider), "weight " + (c.weight === undefined ? 1 : c.weight)]);
      });
    }
    if (s.mirroring) {
      children.push([qualify(s.mirroring.service, s.provider), "main"]);
      (s.mirroring.mirrors || []).forEach(function (m) {
        children.push([qualify(m.name, s.provider), "mirror " + (m.percent === undefined ? 0 : m.percent) + "%"]);
      });
    }
    if (s.failover) {
      children.push([qualify(s.failover.service, s.provider), "main"]);
      children.push([qualify(s.failover.fallback, s.provider), "fallback"]);
    }
    if (children.length) {
      fields.push(field("Services", h("ul", {class: "plain"}, children.map(function (c) {
        return h("li", {}, objectLink(protocol, "services", c[0]), " ", h("span", {class: "muted"}, c[1]));
      }))));
    }
    parts.push(h("dl", {class: "fields"}, fields));
    const servers = serversOf(s);
    const urls = servers.length ? servers : Object.keys(status);
    if (urls.length) {
      parts.push(h("h2", {}, "Servers"));
      parts.push(h("table", {class: "objects servers"},
        h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, protocol === "http" ? "URL" : "Address"))),
        h("tbody", {}, urls.map(function (u) {
          const state = status[u];
          return h("tr", {"data-server": u},
            h("td", {}, state ? h("span", {class: "server server-" + state.toLowerCase(), "data-server-status": state}, state)
              : h("span", {class: "muted"}, "—")),
            h("td", {}, h("code", {}, u)));
        }))));
    }
    return parts;
  }

  function middlewareDetail(protocol, m) {
    const fields = [field("Type", m.type || "—")];
    fields.push(field("Used by", joinLinks(m.usedBy, function (r) { return objectLink(protocol, "routers", r); })));
    fields.push(field("Provider", m.provider || providerOf(m.name)));
    const known = ["name", "provider", "type", "status", "error", "usedBy"];
    const config = {};
    Object.keys(m).forEach(function (k) { if (known.indexOf(k) < 0) config[k] = m[k]; });
    fields.push(field("Configuration", h("pre", {class: "inline"}, JSON.stringify(config, null, 2))));
    return [errorsBox(m), h("dl", {class: "fields"}, fields)];
  }

  const DETAILS = {routers: routerDetail, services: serviceDetail, middlewares: middlewareDetail};

  function buildDetailPage(view, route) {
    const content = h("div", {id: "content"});
    view.content = content;
    view.heading = h("h1", {}, route.name);
    const back = h("a", {class: "back", href: "#/" + route.protocol + "/" + route.kind},
      "← " + route.protocol.toUpperCase() + " " + TITLES[route.kind]);
    return [back, view.heading, content];
  }

  async function loadDetail(view, route) {
    try {
      view.item = await getOne(route.protocol + "/" + route.kind + "/" + encodeURIComponent(route.name));
    } catch (e) {
      if (e.status === 404) {
        view.item = null;
        return "missing";
      }
      throw e;
    }
    return view.item;
  }

  function drawDetail(view, route) {
    clear(view.heading);
    clear(view.content);
    if (!view.item) {
      append(view.heading, [route.name]);
      view.content.appendChild(h("p", {class: "empty"}, "There is no such object (any more)."));
      return;
    }
    const item = view.item;
    append(view.heading, [item.name || route.name, " ", badge(item.status)]);
    append(view.content, [DETAILS[route.kind](route.protocol, item), rawJSON(item)]);
  }

  // ---------------------------------------------------------------- overview and entrypoints

  function sectionCard(protocol, kind, section) {
    const base = "#/" + protocol + "/" + kind;
    if (!section) section = {total: 0, warnings: 0, errors: 0};
    const ok = section.total - section.warnings - section.errors;
    return h("a", {class: "card", href: base, "data-section": protocol + "-" + kind},
      h("div", {class: "card-title"}, TITLES[kind]),
      h("div", {class: "card-total", "data-total": section.total}, String(section.total)),
      h("div", {class: "card-counts"},
        h("span", {class: "pill pill-enabled", "data-count": "enabled"}, ok + " ok"),
        h("span", {class: "pill pill-warning" + (section.warnings ? "" : " zero"), "data-count": "warnings"}, section.warnings + " warnings"),
        h("span", {class: "pill pill-disabled" + (section.errors ? "" : " zero"), "data-count": "errors"}, section.errors + " errors")));
  }

  function entrypointAddress(e) {
    return e.address || "—";
  }

  function buildOverview(view) {
    view.content = h("div", {id: "content"});
    return [h("h1", {}, "Overview"), view.content];
  }

  async function loadOverview(view) {
    const answers = await Promise.all([getOne("overview"), getList("entrypoints")]);
    view.overview = answers[0] || {};
    view.entrypoints = answers[1];
    return answers;
  }

  function drawOverview(view) {
    const o = view.overview;
    clear(view.content);
    view.content.appendChild(h("h2", {}, "Entrypoints"));
    view.content.appendChild(h("div", {class: "cards entrypoints"}, view.entrypoints.map(function (e) {
      return h("a", {class: "card entrypoint", href: "#/entrypoints", "data-entrypoint": e.name},
        h("div", {class: "card-title"}, e.name),
        h("div", {class: "card-address"}, h("code", {}, entrypointAddress(e))));
    })));
    [["http", ["routers", "services", "middlewares"]], ["tcp", ["routers", "services", "middlewares"]], ["udp", ["routers", "services"]]]
      .forEach(function (pair) {
        const protocol = pair[0];
        const sections = o[protocol] || {};
        view.content.appendChild(h("h2", {}, protocol.toUpperCase()));
        view.content.appendChild(h("div", {class: "cards"}, pair[1].map(function (kind) {
          return sectionCard(protocol, kind, sections[kind]);
        })));
      });
    const features = o.features || {};
    view.content.appendChild(h("h2", {}, "Features"));
    view.content.appendChild(h("div", {class: "cards"},
      h("div", {class: "card small"}, h("div", {class: "card-title"}, "Tracing"), h("div", {}, features.tracing || "off")),
      h("div", {class: "card small"}, h("div", {class: "card-title"}, "Metrics"), h("div", {}, features.metrics || "off")),
      h("div", {class: "card small"}, h("div", {class: "card-title"}, "Access log"), h("div", {}, features.accessLog ? "on" : "off"))));
    view.content.appendChild(h("h2", {}, "Providers"));
    view.content.appendChild(h("div", {class: "cards"}, (o.providers || []).map(function (p) {
      return h("div", {class: "card small provider-card"}, p);
    })));
  }

  function buildEntrypoints(view) {
    view.content = h("div", {id: "content"});
    return [h("h1", {}, "Entrypoints"), view.content];
  }

  async function loadEntrypoints(view) {
    view.entrypoints = await getList("entrypoints");
    return view.entrypoints;
  }

  function drawEntrypoints(view) {
    clear(view.content);
    const rows = view.entrypoints.map(function (e) {
      const http = e.http || {};
      const redirect = http.redirections && http.redirections.entryPoint;
      return h("tr", {"data-name": e.name},
        h("td", {}, h("strong", {}, e.name)),
        h("td", {}, codeOrDash(entrypointAddress(e))),
        h("td", {}, http.tls ? "TLS" : h("span", {class: "muted"}, "—")),
        h("td", {}, redirect ? "→ " + redirect.to + " (" + (redirect.scheme || "https") + ")" : h("span", {class: "muted"}, "—")),
        h("td", {}, (http.middlewares || []).join(", ") || h("span", {class: "muted"}, "—")),
        h("td", {}, h("details", {"data-keep": "ep-" + e.name}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(e, null, 2)))));
    });
    view.content.appendChild(h("table", {class: "objects"},
      h("thead", {}, h("tr", {}, ["Name", "Address", "TLS", "Redirect", "Middlewares", "Details"].map(function (t) { return h("th", {}, t); }))),
      h("tbody", {}, rows)));
  }

  // ---------------------------------------------------------------- views

  const VIEWS = {
    overview: {build: buildOverview, load: loadOverview, draw: drawOverview},
    entrypoints: {build: buildEntrypoints, load: loadEntrypoints, draw: drawEntrypoints},
    list: {build: buildListPage, load: loadList, draw: drawList},
    detail: {build: buildDetailPage, load: loadDetail, draw: drawDetail},
    missing: {
      build: function () { return [h("h1", {}, "Not found"), h("p", {}, "This page does not exist. ", h("a", {href: "#/"}, "Overview"))]; },
      load: async function () { return null; },
      draw: function () {},
    },
  };

  let current = null; // {key, route, view, spec, last}
  let timer = null;
  let busy = false;
  let refreshes = 0;

  function setLive(ok, message) {
    const live = document.getElementById("live");
    const banner = document.getElementById("banner");
    live.className = "live " + (ok ? "live-ok" : "live-error");
    const time = new Date().toLocaleTimeString();
    live.textContent = ok
      ? "live · generation " + (generation === null ? "?" : generation) + " · " + time
      : "API unreachable · retrying";
    if (ok) {
      banner.hidden = true;
    } else {
      banner.hidden = false;
      banner.textContent = "Cannot read the API: " + message;
    }
  }

  // Keep <details> that the reader opened open across redraws.
  function openDetails(root) {
    const open = new Set();
    root.querySelectorAll("details[open][data-keep]").forEach(function (d) { open.add(d.getAttribute("data-keep")); });
    return open;
  }

  function reopenDetails(root, open) {
    root.querySelectorAll("details[data-keep]").forEach(function (d) {
      if (open.has(d.getAttribute("data-keep"))) d.open = true;
    });
  }

  async function refresh() {
    if (busy || !current) return;
    if (document.hidden) {
      // Nobody is looking: check again later, and at once when the tab shows.
      schedule();
      return;
    }
    busy = true;
    const state = current;
    try {
      const data = await state.spec.load(state.view, state.route);
      if (state !== current) return;
      const fingerprint = JSON.stringify(data);
      if (fingerprint !== state.last) {
        state.last = fingerprint;
        const main = document.getElementById("main");
        const open = openDetails(main);
        state.spec.draw(state.view, state.route);
        reopenDetails(main, open);
        document.body.setAttribute("data-generation", generation === null ? "" : generation);
      }
      setLive(true);
      // How many times the page was read (tests wait on it).
      document.body.setAttribute("data-refreshes", String(++refreshes));
    } catch (e) {
      setLive(false, e && e.message ? e.message : String(e));
    } finally {
      busy = false;
      schedule();
    }
  }

  function schedule() {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(refresh, POLL_MS);
  }

  function show() {
    const route = parseRoute();
    const key = routeKey(route);
    if (current && current.key === key) {
      // Only the search or filter changed (back/forward): redraw from what we have.
      current.route.search = route.search;
      current.route.status = route.status;
      const search = document.getElementById("search");
      const status = document.getElementById("status-filter");
      if (search) search.value = route.search;
      if (status) status.value = route.status;
      if (current.view.items) drawList(current.view, current.route);
      return;
    }
    const spec = VIEWS[route.page];
    const view = {};
    const main = document.getElementById("main");
    clear(main);
    append(main, [spec.build(view, route)]);
    current = {key: key, route: route, view: view, spec: spec, last: null};
    document.querySelectorAll("#nav a").forEach(function (a) {
      const target = a.getAttribute("data-nav");
      const here = route.page === "overview" ? "overview" : route.page === "entrypoints" ? "entrypoints" : route.protocol + "/" + route.kind;
      a.classList.toggle("active", target === here);
    });
    document.title = (route.name || (route.kind ? route.protocol.toUpperCase() + " " + TITLES[route.kind] : route.page === "entrypoints" ? "Entrypoints" : "Overview")) + " · relayd";
    window.scrollTo(0, 0);
    busy = false;
    refresh();
  }

  async function loadVersion() {
    try {
      const v = await getOne("version");
      document.getElementById("version").textContent = (v && (v.Version || v.version)) || "?";
      if (v && v.startDate) {
        document.getElementById("started").textContent = " · started " + new Date(v.startDate).toLocaleString();
      }
    } catch (e) {
      // The live indicator already says when the API cannot be read.
    }
  }

  window.addEventListener("hashchange", show);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !busy) refresh();
  });
  document.addEventListener("DOMContentLoaded", function () {
    loadVersion();
    show();
  });
})();
