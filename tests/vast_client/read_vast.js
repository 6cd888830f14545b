// Reads a VAST document from stdin with @dailymotion/vast-client (as players do) and prints
// what it understood as JSON, for tests/api/test_vast.py.
const { VASTParser } = require('@dailymotion/vast-client');
const { DOMParser } = require('@xmldom/xmldom');
let xml = '';
process.stdin.on('data', d => xml += d);
process.stdin.on('end', async () => {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const parser = new VASTParser();
  const res = await parser.parseVAST(doc);
  const ads = res.ads.map(ad => ({
    sequence: ad.sequence, adServingId: ad.adServingId, system: ad.system && ad.system.value,
    impressions: ad.impressionURLTemplates.map(t => t.url),
    creatives: ad.creatives.map(c => ({type: c.type, duration: c.duration,
      media: c.mediaFiles.map(m => ({url: m.fileURL, type: m.mimeType, width: m.width})),
      tracking: Object.fromEntries(Object.entries(c.trackingEvents).map(([k, v]) => [k, v])),
      clickTracking: (c.videoClickTrackingURLTemplates || []).map(t => t.url)})),
  }));
  console.log(JSON.stringify({version: res.version, ads}));
});
