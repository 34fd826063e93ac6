'use strict';

// Gimel's deploy-time settings that plain serverless.yml cannot express. It reads
// `custom.gimel` (--param values or GIMEL_* variables, see serverless.yml) and,
// before any command runs:
//   - adds every extra track path (custom.gimel.trackPaths) as a copy of each /track
//     route, and tells the function about them in GIMEL_TRACK_PATHS (the app then
//     serves them exactly as /track);
//   - puts the function in a VPC when subnets and security groups are given;
//   - with frontDoor=url, gives the function a public Lambda function URL as well, the
//     cheaper way in for tracking (the REST API and its key stay as they are);
//   - passes sourceBudget to the app (GIMEL_SOURCE_BUDGET) and, with trackRateLimit, caps
//     the requests per second API Gateway's stage lets through to the tracking routes;
//   - checks the watcher's alert settings (webhookUrl, webhookSecret, slackWebhookUrl,
//     dashboardUrl, watchSilentHours) and sets them as GIMEL_* variables of the watch
//     function only, so the API function never holds a webhook's secret;
// and, before packaging, refuses a package that could not work once deployed: no
// Redis URL (or one on this machine), or an API key API Gateway would reject. `sls
// offline` needs the key as well.
//
// A Redis on this machine is accepted in one case only: when AWS_ENDPOINT_URL sends every
// AWS call to an emulator on this machine too (tests/test_emulated_deploy.py), whose
// functions run here and so can reach it. A deploy to AWS never has that variable pointing
// at this machine. The same holds for a webhook on this machine (the emulated deploy's
// receiver).

// The rules the app applies too (gimel_core/rules.py), written once in rules.json.
const RULES = require('../gimel_core/rules.json');

const TRACK = 'track';
// How visitors' events reach the function. rest: API Gateway's REST API only (the routes
// of serverless.yml). url: a Lambda function URL too, which costs nothing beyond the
// function's own price; every path reaches the function there, and the app refuses the
// private ones without the key, as it does behind API Gateway.
const FRONT_DOORS = ['rest', 'url'];
// The names the app accepts in GIMEL_TRACK_PATHS.
const PATH = whole(RULES.trackPath.pattern);
// One key as API Gateway accepts it (the app also takes several, comma-separated).
const API_KEY = whole(RULES.apiKey.pattern);
// The key the example events in events/ carry: public, so never deployed.
const EXAMPLE_KEY = 'local-example-key-0123456789';
const REDIS_URL = /^rediss?(\+cluster)?:\/\/\S+$/;
// The host part of a Redis URL that only means something on the machine running sls.
const LOOPBACK = /^rediss?(?:\+cluster)?:\/\/(?:[^@/]*@)?(?:localhost|127\.[0-9.]+|0\.0\.0\.0|\[::1?\])(?:[:/]|$)/i;

// An AWS endpoint on this machine: an emulator, never AWS.
const LOCAL_ENDPOINT = /^https?:\/\/(?:localhost|127\.[0-9.]+|\[::1\])(?::\d+)?(?:\/|$)/i;

// The function EventBridge runs on the watchRate schedule (serverless.yml, where osls checks
// the expression against EventBridge's rules before any plugin runs).
const WATCH = 'watch';
const LOOPBACK_HOST = /^(?:localhost|127\.[0-9.]+|\[::1\])$/i;
// A dashboard address an alert may link to (the app's GIMEL_DASHBOARD_URL rule).
const DASHBOARD_URL = /^https?:\/\/[^/\s?#]+(\/[^\s?#]*)?$/;

function whole(pattern) {
  return new RegExp(`^(?:${pattern})$`);
}

function list(value) {
  const items = Array.isArray(value) ? value : String(value ?? '').split(',');
  return items.map((item) => String(item).trim()).filter(Boolean);
}

function httpEvent(event) {
  // `http: GET /track` or `http: {method, path, ...}`, path with or without slashes.
  const http = event && event.http;
  if (!http) return null;
  if (typeof http === 'string') {
    const [method, path] = http.trim().split(/\s+/);
    return { method, path: trimSlashes(path) };
  }
  return { ...http, path: trimSlashes(http.path) };
}

function trimSlashes(path) {
  return String(path ?? '').replace(/^\/+|\/+$/g, '');
}

class GimelPlugin {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      initialize: () => this.configure(),
      'after:package:compileEvents': () => this.throttleTracking(),
      'before:package:initialize': () => this.checkDeployable(),
      'before:deploy:function:initialize': () => this.checkDeployable(),
      // serverless-offline checks the key like API Gateway, and the app must know it too.
      'before:offline:start': () => this.checkApiKey(),
      'before:offline:start:init': () => this.checkApiKey(),
    };
  }

  settings() {
    return (this.serverless.service.custom && this.serverless.service.custom.gimel) || {};
  }

  fail(message) {
    throw new this.serverless.classes.Error(`Gimel: ${message}`);
  }

  configure() {
    this.addTrackPaths(list(this.settings().trackPaths));
    this.addVpc(list(this.settings().subnetIds), list(this.settings().securityGroupIds));
    this.addFrontDoor(String(this.settings().frontDoor || 'rest').trim());
    this.addSourceBudget(String(this.settings().sourceBudget ?? '').trim());
    this.addWatcher();
  }

  // The watcher's alert settings, to its environment only.
  addWatcher() {
    const watch = this.serverless.service.functions[WATCH];
    if (!watch) this.fail(`serverless.yml has no ${WATCH} function`);
    const setting = (name) => String(this.settings()[name] ?? '').trim();
    const env = {};
    const webhook = setting('webhookUrl');
    const secret = setting('webhookSecret');
    const slack = setting('slackWebhookUrl');
    if (webhook) this.checkDestination('webhookUrl', webhook);
    if (slack) this.checkDestination('slackWebhookUrl', slack);
    if (webhook && !secret) this.fail('webhookUrl needs webhookSecret: alerts are always signed');
    if (secret && !webhook) this.fail('webhookSecret is set but webhookUrl is not');
    if (secret && secret.length < RULES.webhookSecret.minLength) {
      this.fail(
        `webhookSecret must be ${RULES.webhookSecret.description}; make one with: ` +
          'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
      );
    }
    if (webhook) Object.assign(env, { GIMEL_WEBHOOK_URL: webhook, GIMEL_WEBHOOK_SECRET: secret });
    if (slack) env.GIMEL_SLACK_WEBHOOK_URL = slack;
    const dashboard = setting('dashboardUrl');
    if (dashboard) {
      if (!DASHBOARD_URL.test(dashboard)) {
        this.fail(
          'dashboardUrl must be the dashboard\'s address, like ' +
            `https://gimel.example.com/prod/dashboard, got ${JSON.stringify(dashboard)}`
        );
      }
      env.GIMEL_DASHBOARD_URL = dashboard;
    }
    const silent = setting('watchSilentHours');
    if (silent) {
      if (!/^\d{1,3}$/.test(silent) || Number(silent) < 1 || Number(silent) > 720) {
        this.fail(`watchSilentHours must be a whole number of hours from 1 to 720, got ${JSON.stringify(silent)}`);
      }
      env.GIMEL_WATCH_SILENT_HOURS = silent;
    }
    watch.environment = { ...watch.environment, ...env };
  }

  // Where alerts may go (the app's notify.check_url): https, no user or password, and a host
  // the function can reach. Shown by scheme and host only: a Slack URL is itself a secret.
  checkDestination(name, value) {
    let url;
    try {
      url = new URL(value);
    } catch {
      this.fail(`${name} is not a URL`);
    }
    const shown = `${url.protocol}//${url.host}/...`;
    const endpoint = process.env.AWS_ENDPOINT_URL || '';
    const loopback = LOOPBACK_HOST.test(url.hostname);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
      this.fail(`${name} must be an https:// URL (got ${shown})`);
    }
    if (url.username || url.password) {
      this.fail(`${name} must not carry a user or password (got ${shown})`);
    }
    if (loopback && !LOCAL_ENDPOINT.test(endpoint)) {
      this.fail(
        `${name} points at this machine (${shown}), which the watch function cannot reach: ` +
          'give an address reachable from AWS'
      );
    }
  }

  addSourceBudget(budget) {
    if (budget === '') return;
    if (!/^\d{1,7}$/.test(budget)) {
      this.fail(`sourceBudget must be a whole number of events (0 turns it off), got ${JSON.stringify(budget)}`);
    }
    for (const fn of Object.values(this.serverless.service.functions)) {
      fn.environment = { ...fn.environment, GIMEL_SOURCE_BUDGET: budget };
    }
  }

  // API Gateway's stage throttling of each tracking route (every client together, unlike the
  // app's per-source budget): set on the deployment that creates the stage.
  throttleTracking() {
    const limit = String(this.settings().trackRateLimit ?? '').trim();
    if (limit === '') return;
    if (!/^[1-9]\d{0,5}$/.test(limit)) {
      this.fail(`trackRateLimit must be a whole number of requests per second, got ${JSON.stringify(limit)}`);
    }
    const resources = this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
    const deployments = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Deployment');
    if (deployments.length !== 1) this.fail('trackRateLimit needs the REST API\'s one deployment');
    const paths = [TRACK, ...list(this.settings().trackPaths).map(trimSlashes)];
    const rate = Number(limit);
    const methodSettings = paths.flatMap((path) =>
      ['GET', 'POST'].map((method) => ({
        ResourcePath: `/${`/${path}`.replace(/~/g, '~0').replace(/\//g, '~1')}`,
        HttpMethod: method,
        ThrottlingRateLimit: rate,
        ThrottlingBurstLimit: rate * 2,
      }))
    );
    const properties = deployments[0].Properties;
    properties.StageDescription = { ...properties.StageDescription, MethodSettings: methodSettings };
  }

  addFrontDoor(frontDoor) {
    if (!FRONT_DOORS.includes(frontDoor)) {
      this.fail(`frontDoor must be one of ${FRONT_DOORS.join(', ')}, got ${JSON.stringify(frontDoor)}`);
    }
    if (frontDoor !== 'url') return;
    const functions = Object.values(this.serverless.service.functions);
    const tracking = functions.filter((fn) =>
      (fn.events || []).some((event) => (httpEvent(event) || {}).path === TRACK)
    );
    // No `cors` setting: the function URL then hands OPTIONS to the app, which answers
    // CORS for any origin exactly as it does behind the REST API.
    for (const fn of tracking) fn.url = true;
  }

  addTrackPaths(extra) {
    if (extra.length === 0) return;
    const functions = this.serverless.service.functions;
    const paths = extra.map(trimSlashes);
    for (const path of paths) {
      if (!PATH.test(path)) {
        this.fail(`track path ${JSON.stringify(path)} may only hold ${RULES.trackPath.description}`);
      }
    }
    // A new path must not shadow or extend an existing route: API Gateway would send
    // /experiments/collect to it instead of to experiments/{name}, for example.
    const taken = new Set();
    for (const fn of Object.values(functions)) {
      for (const event of fn.events || []) {
        const http = httpEvent(event);
        if (http) taken.add(http.path.split('/')[0].toLowerCase());
      }
    }
    for (const path of paths) {
      if (taken.has(path.split('/')[0].toLowerCase())) {
        this.fail(`track path ${JSON.stringify(path)} collides with an existing route`);
      }
      taken.add(path.split('/')[0].toLowerCase());
    }

    let found = false;
    for (const fn of Object.values(functions)) {
      const trackEvents = (fn.events || []).map(httpEvent).filter((e) => e && e.path === TRACK);
      if (trackEvents.length === 0) continue;
      found = true;
      for (const path of paths) {
        for (const event of trackEvents) fn.events.push({ http: { ...event, path } });
      }
      fn.environment = { ...fn.environment, GIMEL_TRACK_PATHS: paths.join(',') };
    }
    if (!found) this.fail('trackPaths is set but no function serves /track');
  }

  addVpc(subnetIds, securityGroupIds) {
    if (subnetIds.length === 0 && securityGroupIds.length === 0) return;
    if (subnetIds.length === 0 || securityGroupIds.length === 0) {
      this.fail('a VPC needs both subnetIds and securityGroupIds (comma-separated)');
    }
    if (!subnetIds.every((id) => id.startsWith('subnet-'))) {
      this.fail(`subnetIds must be subnet-... ids, got ${subnetIds.join(',')}`);
    }
    if (!securityGroupIds.every((id) => id.startsWith('sg-'))) {
      this.fail(`securityGroupIds must be sg-... ids, got ${securityGroupIds.join(',')}`);
    }
    this.serverless.service.provider.vpc = { subnetIds, securityGroupIds };
  }

  checkApiKey() {
    if (!API_KEY.test(this.settings().apiKey || '')) {
      this.fail(
        'set the API key with --param="apiKey=..." (or GIMEL_API_KEY): ' +
          `${RULES.apiKey.description}. Generate one with: ` +
          'python3 -c "import secrets; print(secrets.token_urlsafe(24))"'
      );
    }
  }

  checkDeployable() {
    this.checkApiKey();
    const { apiKey, redisUrl } = this.settings();
    if (apiKey === EXAMPLE_KEY) {
      this.fail('that API key is the public example from events/: deploy with a key of your own');
    }
    if (!REDIS_URL.test(redisUrl || '')) {
      this.fail(
        'set the Redis URL with --param="redisUrl=redis://..." or rediss://... for TLS ' +
          '(or GIMEL_REDIS_URL); the function has no Redis of its own'
      );
    }
    const endpoint = process.env.AWS_ENDPOINT_URL || '';
    if (LOOPBACK.test(redisUrl) && LOCAL_ENDPOINT.test(endpoint)) {
      this.serverless.cli.log(
        `Gimel: deploying to the AWS emulator at ${endpoint}: its functions run on this ` +
          'machine, so a Redis on this machine is allowed'
      );
    } else if (LOOPBACK.test(redisUrl)) {
      this.fail(
        `the Redis URL points at this machine (${redisUrl.replace(/\/\/[^@/]*@/, '//...@')}), ` +
          'which the function cannot reach: give the address of a Redis reachable from AWS ' +
          '(GIMEL_REDIS_URL from a local run may still be set in this shell)'
      );
    }
  }
}

module.exports = GimelPlugin;
