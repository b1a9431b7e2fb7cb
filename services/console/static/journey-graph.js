// The journey canvas's one translation: a journey definition (the journey service's JSON graph)
// and its layout <-> the graph the Drawflow editor draws. Pure functions, no page access.
//
// On the canvas the entry is a node of its own (kind "entry", holding `entry`, `reentry`,
// `goal` and `exit`) whose one output is `start`. Every other node keeps its settings as
// `data.settings`, the definition's node without its edges, as JSON text (Drawflow looks up an
// element for every key of an object in `data`, and a key such as a trait's name need not make
// a valid selector); each edge field (`next`,
// `timeout_next`, `branches[i].next`, `default`, `arms[i].next`) is one output port, in order.
(function () {
  "use strict";

  var ENTRY = "$entry";
  var ENTRY_KEYS = ["entry", "reentry", "goal", "exit"];
  var NODE_HTML = '<div class="node-head"><span class="node-kind"></span>' +
    '<span class="node-id"></span></div><div class="node-summary"></div>' +
    '<div class="node-stats"></div><div class="node-error"></div>';
  var KINDS = {
    entry: {label: "Entry", inputs: 0},
    send: {label: "Send", inputs: 1},
    wait: {label: "Wait", inputs: 1},
    wait_for: {label: "Wait for", inputs: 1},
    branch: {label: "Branch", inputs: 1},
    split: {label: "Split", inputs: 1},
    update_profile: {label: "Update profile", inputs: 1},
    exit: {label: "Exit", inputs: 1}
  };

  function copy(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  // The edge fields of a node, in port order: [field path, label shown on the port].
  function edgesOf(kind, body) {
    switch (kind) {
      case "entry": return [["start", "start"]];
      case "send": case "wait": case "update_profile": return [["next", "next"]];
      case "wait_for": return [["next", "came"], ["timeout_next", "timed out"]];
      case "branch":
        return (body.branches || []).map(function (_, i) {
          return ["branches[" + i + "].next", "path " + (i + 1)];
        }).concat([["default", "otherwise"]]);
      case "split":
        return (body.arms || []).map(function (arm, i) {
          return ["arms[" + i + "].next", String(arm && arm.name || "arm " + (i + 1))];
        });
      default: return [];
    }
  }

  // "branches[2].next" -> the object holding it and its key.
  function edgeSlot(body, path) {
    var item = /^(branches|arms)\[(\d+)\]\.next$/.exec(path);
    if (!item) { return {holder: body, key: path}; }
    var list = body[item[1]] || [];
    return {holder: list[Number(item[2])] || {}, key: "next"};
  }

  function edgeTarget(body, path) {
    var slot = edgeSlot(body, path);
    return typeof slot.holder[slot.key] === "string" ? slot.holder[slot.key] : null;
  }

  function withoutEdges(kind, body) {
    var bare = copy(body);
    edgesOf(kind, bare).forEach(function (edge) {
      var slot = edgeSlot(bare, edge[0]);
      delete slot.holder[slot.key];
    });
    delete bare.type;
    return bare;
  }

  // Where nodes without a stored position go: a column per step from the entry.
  function autoLayout(definition) {
    var nodes = definition.nodes || {};
    var depth = {};
    var queue = [];
    if (typeof definition.start === "string" && nodes[definition.start]) {
      depth[definition.start] = 1;
      queue.push(definition.start);
    }
    while (queue.length) {
      var id = queue.shift();
      var body = nodes[id];
      edgesOf(body.type, body).forEach(function (edge) {
        var target = edgeTarget(body, edge[0]);
        if (target && nodes[target] && depth[target] === undefined) {
          depth[target] = depth[id] + 1;
          queue.push(target);
        }
      });
    }
    var deepest = Object.keys(depth).reduce(function (most, id) {
      return Math.max(most, depth[id]);
    }, 0);
    var perColumn = {};
    var positions = {entry: {x: 20, y: 40}, nodes: {}};
    Object.keys(nodes).forEach(function (id) {
      var column = depth[id] === undefined ? deepest + 1 : depth[id];
      perColumn[column] = (perColumn[column] || 0) + 1;
      positions.nodes[id] = {x: 20 + column * 220, y: 40 + (perColumn[column] - 1) * 170};
    });
    return positions;
  }

  function drawflowNode(dfId, kind, nodeId, body, position, outputs) {
    return {
      id: dfId, name: kind, data: {node_id: nodeId, kind: kind, settings: JSON.stringify(body)},
      class: "journey-node kind-" + kind, html: NODE_HTML, typenode: false,
      inputs: KINDS[kind] && KINDS[kind].inputs ? {input_1: {connections: []}} : {},
      outputs: outputs, pos_x: position.x, pos_y: position.y
    };
  }

  // A definition and its layout (either may lack parts) -> Drawflow's import format.
  function toDrawflow(definition, layout) {
    definition = definition || {};
    var nodes = definition.nodes && typeof definition.nodes === "object" ? definition.nodes : {};
    var placed = autoLayout(definition);
    var stored = layout || {};
    var data = {};
    var dfIds = {};
    var next = 2;
    Object.keys(nodes).forEach(function (id) { dfIds[id] = next++; });

    function outputsFor(kind, body) {
      var outputs = {};
      edgesOf(kind, body).forEach(function (edge, i) {
        var target = kind === "entry" ? definition.start : edgeTarget(body, edge[0]);
        var connections = [];
        if (typeof target === "string" && dfIds[target]) {
          connections.push({node: String(dfIds[target]), output: "input_1"});
        }
        outputs["output_" + (i + 1)] = {connections: connections};
      });
      return outputs;
    }

    var entryBody = {};
    ENTRY_KEYS.forEach(function (key) {
      if (definition[key] !== undefined) { entryBody[key] = copy(definition[key]); }
    });
    var entryPosition = stored.entry || placed.entry;
    data[1] = drawflowNode(1, "entry", ENTRY, entryBody, entryPosition,
                           outputsFor("entry", entryBody));
    Object.keys(nodes).forEach(function (id) {
      var body = nodes[id] && typeof nodes[id] === "object" ? nodes[id] : {};
      var kind = KINDS[body.type] ? body.type : "exit";
      var position = (stored.nodes && stored.nodes[id]) || placed.nodes[id];
      data[dfIds[id]] = drawflowNode(dfIds[id], kind, id, withoutEdges(kind, body), position,
                                     outputsFor(kind, body));
    });
    // Each connection is kept at both ends.
    Object.keys(data).forEach(function (from) {
      Object.keys(data[from].outputs).forEach(function (port) {
        data[from].outputs[port].connections.forEach(function (connection) {
          data[connection.node].inputs.input_1.connections.push({node: String(from), input: port});
        });
      });
    });
    return {drawflow: {Home: {data: data}}};
  }

  // Drawflow's export -> {definition, layout}. An output with no connection ends the run there.
  function toDefinition(exported) {
    var data = exported.drawflow.Home.data;
    var definition = {};
    var layout = {entry: null, nodes: {}};
    var byDfId = {};
    Object.keys(data).forEach(function (dfId) { byDfId[dfId] = data[dfId].data; });

    function targetOf(node, port) {
      var connections = (node.outputs[port] || {connections: []}).connections;
      return connections.length ? byDfId[connections[0].node].node_id : null;
    }

    var order = Object.keys(data).sort(function (a, b) { return Number(a) - Number(b); });
    order.forEach(function (dfId) {
      var node = data[dfId];
      var kind = node.data.kind;
      var position = {x: Math.round(node.pos_x), y: Math.round(node.pos_y)};
      var settings = settingsOf(node.data);
      if (kind === "entry") {
        ENTRY_KEYS.forEach(function (key) {
          if (settings[key] !== undefined) { definition[key] = settings[key]; }
        });
        var start = targetOf(node, "output_1");
        if (start) { definition.start = start; }
        layout.entry = position;
        return;
      }
      var body = Object.assign({type: kind}, settings);
      edgesOf(kind, body).forEach(function (edge, i) {
        var target = targetOf(node, "output_" + (i + 1));
        var slot = edgeSlot(body, edge[0]);
        if (target) { slot.holder[slot.key] = target; } else { delete slot.holder[slot.key]; }
      });
      definition.nodes = definition.nodes || {};
      definition.nodes[node.data.node_id] = body;
      layout.nodes[node.data.node_id] = position;
    });
    return {definition: definition, layout: layout};
  }

  // A canvas node's settings (its definition without edges), as a fresh object.
  function settingsOf(data) { return JSON.parse(data.settings || "{}"); }

  // The canvas node a refusal's field names: a node id, ENTRY, or null (the journey itself).
  function nodeOfField(field, nodeIds) {
    if (!field) { return null; }
    var path = field.replace(/^body\.(definition\.)?/, "");
    if (/^(entry|reentry|goal|exit|start)(\.|\[|$)/.test(path)) { return ENTRY; }
    if (path.indexOf("nodes.") !== 0) { return null; }
    var rest = path.slice("nodes.".length);
    var found = null;
    nodeIds.forEach(function (id) {
      var names = rest === id || rest.indexOf(id + ".") === 0 || rest.indexOf(id + "[") === 0;
      if (names && (found === null || id.length > found.length)) { found = id; }
    });
    return found;
  }

  window.JourneyGraph = {
    ENTRY: ENTRY, KINDS: KINDS, NODE_HTML: NODE_HTML, edgesOf: edgesOf, settingsOf: settingsOf,
    toDrawflow: toDrawflow, toDefinition: toDefinition, nodeOfField: nodeOfField
  };
}());
