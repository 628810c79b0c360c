// The dashboard's entry point: styles, then the app, started once the page is parsed.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { Dashboard } from './app.js';

new Dashboard().start();
